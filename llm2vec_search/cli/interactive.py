"""The interactive search loop of `l2v-search query`: index and model loaded once, then one query per line.

Lines come from stdin, so the loop works the same on a terminal (with readline editing and history) and with
commands piped in. Lines starting with ":" change settings; anything else is a query.
"""

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import L2VError
from ..indexing.options import SearchOptions
from .app import console, err_console, print_error
from .render import hit_details, print_hits

if TYPE_CHECKING:
    from ..indexing import Index
    from ..indexing.search import Hit

PROMPT = "search> "
HISTORY_FILE = "history"
HISTORY_LENGTH = 1000
HELP = """\
Type a query to search, or a command:
  :k N               show N hits
  :mode MODE         hybrid, dense or bm25
  :path GLOB         only files matching GLOB (":path" alone clears the filter)
  :open N            print hit N's whole chunk and where it is
  :help              this text and the current settings
  :quit              leave (Ctrl-D and Ctrl-C leave too)"""


def history_path() -> Path:
    """One history for all indexes, next to the model cache (a rebuild replaces index folders)."""
    from ..encoder.models import cache_dir

    return cache_dir() / HISTORY_FILE


def say(text: str, style: str | None = None) -> None:
    """A line for the reader, printed as is (no markup, no wrapping of long paths)."""
    console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)


class _History:
    """readline line editing and history; only on a terminal, where arrow keys exist."""

    def __init__(self, path: Path) -> None:
        import readline

        self.readline = readline
        self.path = path
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):  # no history yet, or unreadable: start a fresh one
            readline.read_history_file(path)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError as exc:
            err_console.print(f"note: could not save the search history to {self.path}: {exc}", markup=False)


class SearchSession:
    """The search options (k, mode, path filter, ...) and the last hits, which `:open` refers to."""

    def __init__(self, index: "Index", options: SearchOptions) -> None:
        self.index = index
        self.options = options
        self.hits: list[Hit] = []
        self.terminal = sys.stdin.isatty()
        self.model_loaded = False

    def run(self, first_query: str | None = None) -> None:
        """Read lines until `:quit`, end of input or Ctrl-C; a bad line shows its error and we go on."""
        history = _History(history_path()) if self.terminal else None
        try:
            self._load_model()
            if first_query:
                self.handle(first_query)
            while True:
                try:
                    line = input(PROMPT if self.terminal else "")
                except EOFError:
                    break
                if not self.handle(line):
                    break
        except KeyboardInterrupt:
            pass
        finally:
            if self.terminal:
                print()
            if history:
                history.save()

    def _load_model(self) -> None:
        """Load and warm the model up front (not on the first query), so every latency shown is a warm one."""
        if self.options.mode != "bm25" and not self.model_loaded and self.index.status().chunks:
            started = time.perf_counter()
            encoder = self.index.encoder
            encoder.encode_queries(["warm-up"])
            self.model_loaded = True
            seconds = time.perf_counter() - started
            err_console.print(f"loaded {encoder.name} in {seconds:.1f} s", highlight=False, markup=False)

    def handle(self, line: str) -> bool:
        """Run one line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith(":"):
                return self._command(line)
            self._search(line)
        except L2VError as exc:
            print_error(exc)
        return True

    def _search(self, query: str) -> None:
        started = time.perf_counter()
        self.hits = self.index.search(query, self.options)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print_hits(self.hits, query)
        count = f"{len(self.hits)} hit{'' if len(self.hits) == 1 else 's'}"
        say(f"{count} in {elapsed_ms:.0f} ms ({self._settings()})")

    def _settings(self) -> str:
        path = f", path {self.options.path_glob}" if self.options.path_glob else ""
        return f"mode {self.options.mode}, k {self.options.k}{path}"

    def _command(self, line: str) -> bool:
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if name in ("q", "quit", "exit"):
            return False
        if name == "help":
            say(f"{HELP}\nnow: {self._settings()}")
        elif name == "k":
            if not argument.isdigit():
                raise L2VError(f":k needs a whole number, got {argument!r}")
            self.options = self.options.replace(k=int(argument))
            say(f"k is now {self.options.k}")
        elif name == "mode":
            self.options = self.options.replace(mode=argument)
            self._load_model()
            say(f"mode is now {self.options.mode}")
        elif name == "path":
            self.options = self.options.replace(path_glob=argument)
            path = self.options.path_glob
            say(f"path filter: {path}" if path else "path filter cleared")
        elif name == "open":
            self._open(argument)
        else:
            raise L2VError(f"unknown command :{name}; type :help for the commands")
        return True

    def _open(self, argument: str) -> None:
        if not self.hits:
            raise L2VError(":open needs results: search first")
        if not argument.isdigit() or not 1 <= int(argument) <= len(self.hits):
            raise L2VError(f":open needs a hit number from 1 to {len(self.hits)}, got {argument!r}")
        header, body = hit_details(self.hits[int(argument) - 1])
        say(header, style="bold cyan")
        print(body)
