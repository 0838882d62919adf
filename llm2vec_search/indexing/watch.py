"""Watch mode: keep an index current by rerunning its incremental update when files under its roots change.

Changes are debounced: an update starts once no change has arrived for `quiet_s` seconds (or `max_wait_s`
after the first one, under a never-ending stream of changes) and covers everything that changed meanwhile,
so a `git checkout` that touches thousands of files costs one update. The update is the ordinary
`Index.update`, with its crash safety; readers (`serve`, `mcp`, `query`) see each one as it commits.
"""

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Event

from ..errors import L2VError
from .embedding import ChunkEmbedder
from .index import Index
from .location import own_folders
from .update import UpdateSummary

# A failed update is retried after each burst of changes, and without changes after a delay that doubles
# from the quiet period up to this: a busy index or an empty root costs a watcher little while it waits.
MAX_RETRY_SECONDS = 60.0


def watch_index(
    index: Index,
    paths: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    *,
    on_ready: Callable[[], None],
    on_update: Callable[[UpdateSummary], None],
    on_error: Callable[[Exception], None],
    quiet_s: float = 1.0,
    max_wait_s: float = 30.0,
    stop: Event | None = None,
    embedder: ChunkEmbedder | None = None,
) -> None:
    """Watch `paths` until Ctrl-C (or `stop` is set), updating `index` after each burst of changes.

    Once the watcher is running, one catch-up update picks up whatever changed since the caller's own first
    pass, then `on_ready` is called. `on_update` gets each update that changed something. An update that
    fails, for any reason (another process holds the index, a full disk, a model that ran out of memory),
    goes to `on_error` when its message differs from the last failure's, and is retried after the next
    change or, backing off, without one; only Ctrl-C (or `stop`) ends watching. A file given as a root is
    watched anew after each change, so an editor's save (a new file renamed over it) is seen every time; a
    root that disappears is reported, and watched again, with an update, once it is back. `embedder`
    embeds the changed chunks (default: the index's encoder).
    """
    from watchfiles import DefaultFilter, watch

    roots = [Path(os.path.abspath(path)) for path in paths]
    files = {str(root) for root in roots if not root.is_dir()}
    quiet_ms = max(1, round(quiet_s * 1000))
    retry = _Retry(quiet_s)
    ready, due = False, True  # due: an update owed without a change (the catch-up, a root watched anew)
    while not (stop is not None and stop.is_set()):
        gone = [str(root) for root in roots if not root.exists()]
        if gone:
            retry.fail(L2VError(f"{', '.join(gone)} disappeared; watching again once it is back"), on_error)
            if not _wait(quiet_s, stop):
                return
            due = True
            continue
        for changes in watch(
            *map(str, roots),
            watch_filter=DefaultFilter(ignore_paths=[str(folder) for folder in own_folders(index.path)]),
            step=quiet_ms,
            debounce=max(quiet_ms, round(max_wait_s * 1000)),
            rust_timeout=quiet_ms,
            yield_on_timeout=True,  # the first (empty) yield says the watcher is running
            raise_interrupt=False,
            stop_event=stop,
        ):
            if ready and any(not root.exists() for root in roots):
                break  # its watch went with it
            if changes or due or retry.is_due():
                due = False
                try:
                    index.refresh()  # another process may have updated or rebuilt the index meanwhile
                    summary = index.update(roots, include=include, exclude=exclude, embedder=embedder)
                except Exception as exc:  # whatever it is, it is reported and watching goes on
                    retry.fail(exc, on_error)
                else:
                    retry.succeeded()
                    if summary.files_added or summary.files_changed or summary.files_removed:
                        on_update(summary)
            if not ready:
                ready = True
                on_ready()
            if any(path in files for _, path in changes):
                due = True  # a save may have put a new file in its place: watch that one
                break
        else:
            return  # Ctrl-C or `stop`


class _Retry:
    """The last failure (said once until an update succeeds) and when to try again without a change."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self.failed: str | None = None
        self.delay = 0.0
        self.at = 0.0

    def fail(self, exc: Exception, on_error: Callable[[Exception], None]) -> None:
        if str(exc) != self.failed:
            on_error(exc)
        self.failed = str(exc)
        self.delay = min(max(self.quiet_s, 2 * self.delay), MAX_RETRY_SECONDS)
        self.at = time.monotonic() + self.delay

    def succeeded(self) -> None:
        self.failed, self.delay = None, 0.0

    def is_due(self) -> bool:
        return self.failed is not None and time.monotonic() >= self.at


def _wait(seconds: float, stop: Event | None) -> bool:
    """Sleep, unless stopped (by `stop` or Ctrl-C) first; False when stopped."""
    if stop is not None:
        return not stop.wait(seconds)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        return False
    return True
