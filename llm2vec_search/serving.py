"""Which `l2v-search serve` processes are up and what they serve, so a one-shot `query` can ask a warm one.

A one-shot query in a mode that needs the model loads it first (seconds); a running `serve` has it loaded and
answers in milliseconds. `serve` announces itself in `<cache>/servers/<pid>.json` while it runs; `query` asks
the first live one serving the same index folder and falls back to searching itself if that fails in any way,
so a server is never required. Servers that need an API key are not asked.
"""

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .paths import cache_dir

# A warm server answers in milliseconds; one slower than this is busy or stuck: search locally instead.
ASK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningServer:
    pid: int
    url: str
    indexes: dict[str, str]  # index folder (resolved) → the name it is served under
    needs_key: bool

    def name_for(self, folder: Path) -> str | None:
        return self.indexes.get(str(folder.resolve()))


def servers_dir() -> Path:
    return cache_dir() / "servers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to ask
        return True
    return True


def local_url(host: str, port: int) -> str:
    """The address a client on this machine uses for a server bound to `host` (a wildcard means loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def announce(url: str, indexes: dict[str, Path], needs_key: bool) -> Iterator[Path]:
    """Record this process as serving `indexes` (name → folder) at `url` while the block runs."""
    entry = RunningServer(
        os.getpid(), url, {str(folder.resolve()): name for name, folder in indexes.items()}, needs_key
    )
    path = servers_dir() / f"{entry.pid}.json"
    announced = _write_entry(path, entry)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; the default handler would then end the
    # process before the entry is removed, so SIGTERM exits through Python here.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield path
    finally:
        if announced:
            path.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)


def _write_entry(path: Path, entry: RunningServer) -> bool:
    """False when the cache cannot be written: that only costs one-shot queries their shortcut."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(entry)))
        temporary.replace(path)
    except OSError:
        return False
    return True


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def running_servers() -> list[RunningServer]:
    """Every announced server whose process is alive (entries of dead ones are removed)."""
    found = []
    for path in sorted(servers_dir().glob("*.json")):
        try:
            entry = RunningServer(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(entry.pid):
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return found


def server_for(folder: Path) -> RunningServer | None:
    return next((s for s in running_servers() if not s.needs_key and s.name_for(folder)), None)


def ask(server: RunningServer, folder: Path, body: dict) -> list[dict] | None:
    """POST /search on `server` for the index in `folder`; its hits as dicts, or None if it did not answer."""
    request = urllib.request.Request(
        f"{server.url}/search",
        data=json.dumps({**body, "index": server.name_for(folder)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=ASK_TIMEOUT_S) as response:
            return json.loads(response.read())["hits"]
    except (OSError, ValueError, KeyError):  # refused, timed out, an HTTP error, a reply we cannot read
        return None
