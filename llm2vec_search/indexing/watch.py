"""Watch mode: keep an index current by rerunning its incremental update when files under its roots change.

Changes are debounced: an update starts once no change has arrived for `quiet_s` seconds (or `max_wait_s`
after the first one, under a never-ending stream of changes) and covers everything that changed meanwhile,
so a `git checkout` that touches thousands of files costs one update. The update is the ordinary
`Index.update`, with its crash safety; readers (`serve`, `mcp`, `query`) see each one as it commits.
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Event

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
    change or, backing off, without one; only Ctrl-C (or `stop`) ends watching. `embedder` embeds the
    changed chunks (default: the index's encoder).
    """
    from watchfiles import DefaultFilter, watch

    quiet_ms = max(1, round(quiet_s * 1000))
    ready = False
    failed: str | None = None  # the last failure's message, until an update succeeds
    delay, retry_at = 0.0, 0.0
    for changes in watch(
        *paths,
        watch_filter=DefaultFilter(ignore_paths=[str(folder) for folder in own_folders(index.path)]),
        step=quiet_ms,
        debounce=max(quiet_ms, round(max_wait_s * 1000)),
        rust_timeout=quiet_ms,
        yield_on_timeout=True,  # the first (empty) yield says the watcher is running
        raise_interrupt=False,
        stop_event=stop,
    ):
        if changes or not ready or (failed is not None and time.monotonic() >= retry_at):
            try:
                index.refresh()  # another process may have updated or rebuilt the index meanwhile
                summary = index.update(paths, include=include, exclude=exclude, embedder=embedder)
            except Exception as exc:  # whatever it is, it is reported and watching goes on
                if str(exc) != failed:
                    on_error(exc)
                failed = str(exc)
                delay = min(max(quiet_s, 2 * delay), MAX_RETRY_SECONDS)
                retry_at = time.monotonic() + delay
            else:
                failed, delay = None, 0.0
                if summary.files_added or summary.files_changed or summary.files_removed:
                    on_update(summary)
        if not ready:
            ready = True
            on_ready()
