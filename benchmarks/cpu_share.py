"""How much of the CPU other processes used while a benchmark ran, so its figures can say idle or shared.

The 1-minute load average misjudges this: right after another benchmark ends it still counts that one. Here
the machine's busy time over the run (from /proc/stat) minus this process's own CPU time (and its children's)
is what ran beside the benchmark.
"""

import os
import time

# Other processes' share of all cores above which a run is reported as shared.
SHARED_ABOVE = 0.05


def _busy_seconds() -> float | None:
    """All CPUs' non-idle time since boot, in seconds; None where /proc/stat is missing (not Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class OtherWork:
    """`with OtherWork() as other: ...`, then `other.share` (0–1 of all cores) and `other.line()`."""

    def __enter__(self) -> "OtherWork":
        self.share: float | None = None
        self._start = (_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy, own, wall = _busy_seconds(), _own_seconds(), time.perf_counter()
        if busy is None or self._start[0] is None:
            return
        cores = os.cpu_count() or 1
        other = (busy - self._start[0]) - (own - self._start[1])
        self.share = max(0.0, other / ((wall - self._start[2]) * cores))

    @property
    def shared(self) -> bool:
        return self.share is not None and self.share > SHARED_ABOVE

    def line(self) -> str:
        if self.share is None:
            return "other processes' CPU use: not measured (no /proc/stat)"
        verdict = (
            "the machine was shared: absolute rates are lower and noisier than on an idle machine; ratios "
            "measured in the same run are the figures to read"
            if self.shared
            else "the machine was otherwise idle"
        )
        return (
            f"other processes used {self.share:.0%} of the {os.cpu_count()} cores during the run: {verdict}"
        )
