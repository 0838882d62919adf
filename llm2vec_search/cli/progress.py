"""The one progress display of the CLI: Rich bars on stderr, one per phase, fed by the library's callbacks.

The library reports progress through plain callbacks (`Index.update`'s `progress`, `Encoder.encode`'s,
`run_retrieval`'s, training's `on_step`); only this module draws them.
"""

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from .app import err_console


class ProgressBars:
    """A bar per label, created at its first update. The display starts with the first update, so an error
    before any progress prints alone. `detail` (a format of the update's fields) replaces the "done/total"
    count; a transient display is cleared when done, and not drawn at all when stderr is not a terminal."""

    def __init__(self, detail: str | None = None, transient: bool = True) -> None:
        count = MofNCompleteColumn() if detail is None else TextColumn(detail)
        self._progress = Progress(
            TextColumn("[bold]{task.description}[/bold]"),
            BarColumn(),
            count,
            TimeRemainingColumn(),
            console=err_console,
            transient=transient,
            disable=transient and not err_console.is_terminal,  # no bar debris in logs or captured output
        )
        self._tasks: dict[str, TaskID] = {}
        self._started = False

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self._progress.stop()

    def update(self, label: str, done: int, total: int, **fields: object) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total, **fields)
        self._progress.update(self._tasks[label], completed=done, total=total, **fields)
