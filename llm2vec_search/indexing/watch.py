"""Watch mode: keep an index current by rerunning its incremental update when files under its roots change.

Changes are debounced: an update starts once no change has arrived for `quiet_s` seconds (or `max_wait_s`
after the first one, under a never-ending stream of changes) and covers everything that changed meanwhile,
so a `git checkout` that touches thousands of files costs one update. The update is the ordinary
`Index.update`, with its crash safety; readers (`serve`, `mcp`, `query`) see each one as it commits.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Event

from ..errors import L2VError
from .index import Index
from .location import own_folders
from .update import UpdateSummary


def watch_index(
    index: Index,
    paths: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    *,
    on_ready: Callable[[], None],
    on_update: Callable[[UpdateSummary], None],
    on_error: Callable[[L2VError], None],
    quiet_s: float = 1.0,
    max_wait_s: float = 30.0,
    stop: Event | None = None,
) -> None:
    """Watch `paths` until Ctrl-C (or `stop` is set), updating `index` after each burst of changes.

    Once the watcher is running, one catch-up update picks up whatever changed since the caller's own first
    pass, then `on_ready` is called. `on_update` gets each update that changed something; an update that
    fails with a user error (say, another process holds the index) is retried after each quiet period and
    goes to `on_error` when its message differs from the last failure's.
    """
    from watchfiles import DefaultFilter, watch

    quiet_ms = max(1, round(quiet_s * 1000))
    ready = False
    failed: str | None = None  # the last failure's message, until an update succeeds
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
        if changes or failed or not ready:
            try:
                index.refresh()  # another process may have updated or rebuilt the index meanwhile
                summary = index.update(paths, include=include, exclude=exclude)
            except L2VError as exc:
                if str(exc) != failed:
                    on_error(exc)
                failed = str(exc)
            else:
                failed = None
                if summary.files_added or summary.files_changed or summary.files_removed:
                    on_update(summary)
        if not ready:
            ready = True
            on_ready()
