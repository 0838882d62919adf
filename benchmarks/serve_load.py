"""Load test for `l2v-search serve`: requests/s and latency under 1, 8 and 32 concurrent clients.

Builds a small index of Wikipedia paragraphs (from ../shared/data/wiki_en) with the chosen model, then for
micro-batching on and off starts a real server on 127.0.0.1 and drives /v1/embeddings and /search with N
concurrent clients for a fixed time each. Every client sends one short text per request (a RAG program's
query), so the server sees many small concurrent requests: the case micro-batching is for. /search requests
ask for `--search-mode` (dense by default: the encoder-bound path; BM25 never calls the encoder).

    python benchmarks/serve_load.py                      # default model, 15 s per cell
    python benchmarks/serve_load.py --model DIR --seconds 5 --clients 1 8

Request loops are bounded in time and count; only 127.0.0.1 is contacted.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WIKI = ROOT.parent / "shared" / "data" / "wiki_en"
MAX_REQUESTS_PER_CLIENT = 100_000
STARTUP_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 120


@dataclass
class Cell:
    """The outcome of one (batching, endpoint, clients) run."""

    batching: bool
    endpoint: str
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    server_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # HTTP status or exception name → count

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def row(self) -> dict:
        return {
            "batching": "on" if self.batching else "off",
            "endpoint": self.endpoint,
            "clients": self.clients,
            "requests": len(self.latencies_ms),
            "req_per_s": round(self.requests_per_s, 1),
            "p50_ms": round(self.percentile(0.5), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else None,
            "errors": self.errors,
            "5xx": self.server_errors,
        }


def read_wiki(count: int, offset: int = 0) -> list[dict]:
    if not WIKI.is_dir():
        sys.exit(f"error: {WIKI} is missing; this benchmark needs the shared wiki_en data")
    rows = []
    with (WIKI / "paragraphs.jsonl").open() as lines:
        for number, line in enumerate(lines):
            if number >= offset:
                rows.append(json.loads(line))
            if len(rows) == count:
                break
    return rows


def queries(count: int) -> list[str]:
    """Short real sentences (5–25 words) used as query texts."""
    found = []
    with (WIKI / "sentences.txt").open() as lines:
        for line in lines:
            if 5 <= len(line.split()) <= 25:
                found.append(line.strip())
            if len(found) == count:
                break
    return found


def l2v(*args: str) -> list[str]:
    return [sys.executable, "-m", "llm2vec_search", *args]


def build_index(folder: Path, model: str, docs: int) -> None:
    corpus = folder / "corpus"
    corpus.mkdir()
    for number, row in enumerate(read_wiki(docs)):
        (corpus / f"{number:04d}.md").write_text(f"# {row['title']}\n\n{row['text']}\n")
    started = time.perf_counter()
    subprocess.run(
        l2v(
            "index", str(corpus), "--name", "bench", "--index-dir", str(folder / "indexes"), "--model", model
        ),
        check=True,
        capture_output=True,
        timeout=1800,
    )
    print(f"indexed {docs} paragraphs in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, port: int, batching: bool, threads: int | None) -> subprocess.Popen:
    args = ["serve", "--name", "bench", "--index-dir", str(folder / "indexes"), "--port", str(port)]
    args += ([] if batching else ["--no-batching"]) + ([f"--threads={threads}"] if threads else [])
    server = subprocess.Popen(l2v(*args), stderr=subprocess.PIPE)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: server exited: {server.stderr.read().decode()[-500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.3)
    server.kill()
    sys.exit("error: server did not start in time")


def payload(endpoint: str, text: str, search_mode: str) -> dict:
    if endpoint == "/v1/embeddings":
        return {"input": text, "model": "bench"}
    return {"query": text, "k": 5, "mode": search_mode}


async def drive(port: int, cell: Cell, texts: list[str], seconds: float, search_mode: str) -> None:
    """`cell.clients` loops, each sending its next request as soon as the last answer arrived."""
    url = f"http://127.0.0.1:{port}{cell.endpoint}"
    limits = httpx.Limits(max_connections=cell.clients, max_keepalive_connections=cell.clients)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        deadline = time.monotonic() + seconds

        async def one_client(offset: int) -> None:
            for number in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                text = texts[(offset * 7919 + number) % len(texts)]
                sent = time.perf_counter()
                try:
                    response = await client.post(url, json=payload(cell.endpoint, text, search_mode))
                except httpx.HTTPError as exc:
                    cause = exc.__cause__ or exc.__context__
                    cell.failed(
                        f"{type(exc).__name__} ({type(cause).__name__}: {cause})"
                        if cause
                        else type(exc).__name__
                    )
                    continue
                if response.status_code == 200:
                    cell.latencies_ms.append((time.perf_counter() - sent) * 1000)
                else:
                    cell.failed(f"HTTP {response.status_code}: {response.text[:200]}")
                    cell.server_errors += response.status_code >= 500

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(cell.clients)))
        cell.seconds = time.perf_counter() - started


def markdown(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="Model spec for the index (and so the server).")
    parser.add_argument("--docs", type=int, default=40, help="Wikipedia paragraphs in the index.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Duration of each cell.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--endpoints", nargs="+", default=["/v1/embeddings", "/search"])
    parser.add_argument("--search-mode", default="dense", help="The mode /search requests ask for.")
    parser.add_argument("--threads", type=int, help="Pass --threads N to the server (default: PyTorch's).")
    parser.add_argument("--out", type=Path, help="Also write the rows as JSON here.")
    parser.add_argument(
        "--texts",
        type=int,
        default=5000,
        help="Distinct query texts, cycled: more than a cell sends, so that the server's cache of recent "
        "queries seldom answers one",
    )
    args = parser.parse_args()
    texts = queries(args.texts)
    cells = []
    with tempfile.TemporaryDirectory(prefix="l2v-serve-load-") as tmp:
        folder = Path(tmp)
        build_index(folder, args.model, args.docs)
        for batching in (True, False):
            port = free_port()
            server = start_server(folder, port, batching, args.threads)
            try:
                for endpoint in args.endpoints:
                    for clients in args.clients:
                        cell = Cell(batching, endpoint, clients)
                        asyncio.run(drive(port, cell, texts, args.seconds, args.search_mode))
                        cells.append(cell)
                        print(json.dumps(cell.row()), file=sys.stderr)
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
                print(
                    f"batcher stats ({'on' if batching else 'off'}): {json.dumps(health['models'])}",
                    file=sys.stderr,
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
    rows = [cell.row() for cell in cells]
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(
        f"model={args.model} docs={args.docs} seconds/cell={args.seconds} search_mode={args.search_mode} "
        f"cpu_count={os.cpu_count()} "
        f"threads={args.threads or 'default'} OMP_WAIT_POLICY={policy}"
    )
    print(markdown(rows))
    for cell in cells:
        if cell.error_kinds:
            where = f"batching {'on' if cell.batching else 'off'}, {cell.endpoint}, {cell.clients} clients"
            print(f"errors ({where}): {json.dumps(cell.error_kinds)}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
