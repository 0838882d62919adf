"""A small RAG client for `l2v-search serve`: retrieve passages for a question and build a grounded prompt.

Standard library only, so a RAG program can copy this file as it is. Start a server first:

    l2v-search serve --name notes
    python examples/rag_client.py "How do I rebuild an index?" --k 5

The printed prompt is what a RAG program sends to its LLM (any chat API); the numbered sources let the LLM
cite where each claim comes from. The API key, if the server wants one, is read from $L2V_SEARCH_API_KEY.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


class SearchError(Exception):
    """The server refused a request or could not be reached; the message says why."""


class SearchClient:
    """Calls a running `l2v-search serve`; every method returns plain JSON data."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8765", api_key: str | None = None, timeout: float = 60.0
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def search(
        self,
        query: str,
        k: int = 5,
        mode: str | None = None,
        index: str | None = None,
        path_glob: str | None = None,
    ) -> list[dict]:
        """Best chunks first; each has path, start_line, end_line, heading, text and score."""
        payload = {"query": query, "k": k, "mode": mode, "index": index, "path_glob": path_glob}
        payload = {key: value for key, value in payload.items() if value is not None}  # server defaults
        return self._request("POST", "/search", payload)["hits"]

    def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        """Unit-length vectors, in the order of `texts` (OpenAI embeddings API shape)."""
        answer = self._request("POST", "/v1/embeddings", {"input": texts, "model": model})
        return [row["embedding"] for row in sorted(answer["data"], key=lambda row: row["index"])]

    def indexes(self) -> list[dict]:
        return self._request("GET", "/indexes")["indexes"]

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        body = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                message = json.load(exc)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise SearchError(f"{exc.code} from {path}: {message}") from exc
        except urllib.error.URLError as exc:
            raise SearchError(f"cannot reach {self.base_url}: {exc.reason}") from exc


def build_prompt(question: str, hits: list[dict], max_context_chars: int = 8000) -> str:
    """Number the retrieved chunks as sources (path:lines > heading) and ask for an answer that cites them."""
    sources, used = [], 0
    for number, hit in enumerate(hits, start=1):
        where = f"{hit['path']}:{hit['start_line']}-{hit['end_line']}"
        if hit.get("heading"):
            where += f" > {hit['heading']}"
        block = f"[{number}] {where}\n{hit['text'].strip()}"
        if used + len(block) > max_context_chars and sources:
            break
        sources.append(block)
        used += len(block)
    context = "\n\n".join(sources) if sources else "(no sources found)"
    return (
        "Answer the question using only the sources below. Cite the sources you use as [n]. "
        "If the sources do not contain the answer, say so.\n\n"
        f"Sources:\n{context}\n\nQuestion: {question}\nAnswer:"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Retrieve passages from l2v-search serve and print a RAG prompt."
    )
    parser.add_argument("question")
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--mode", choices=["bm25", "hybrid", "dense"], help="default: the server's")
    parser.add_argument("--index", default=None, help="Index name (default: the server's first).")
    parser.add_argument("--json", action="store_true", help="Print the hits as JSON instead of the prompt.")
    args = parser.parse_args(argv)
    client = SearchClient(args.url, api_key=os.environ.get("L2V_SEARCH_API_KEY"))
    try:
        hits = client.search(args.question, k=args.k, mode=args.mode, index=args.index)
    except SearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(hits, indent=2) if args.json else build_prompt(args.question, hits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
