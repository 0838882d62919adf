"""Micro-batching: concurrent requests' texts share one forward pass, and the encoder never runs two at once.

On a CPU a forward pass over 32 short texts costs far less than 32 passes over one text each, so a server that
waits a few milliseconds to collect concurrent requests answers many more of them per second.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import L2VError

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """Vectors for some texts and how many tokens the model saw for each (for usage reporting)."""

    vectors: np.ndarray
    tokens: np.ndarray

    def __getitem__(self, rows: slice) -> "Embedded":
        return Embedded(self.vectors[rows], self.tokens[rows])


EncodeFn = Callable[[list[str], str | None], Embedded]


@dataclass
class BatchStats:
    """Counters for /health: how many requests and texts arrived and how they were grouped into passes."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest_batch_requests: int = 0
    largest_batch_texts: int = 0
    failed_requests: int = 0

    def record(self, requests: int, texts: int) -> None:
        self.requests += requests
        self.texts += texts
        self.batches += 1
        self.largest_batch_requests = max(self.largest_batch_requests, requests)
        self.largest_batch_texts = max(self.largest_batch_texts, texts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    texts: list[str]
    instruction: str | None
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Queue texts from many threads; one worker thread embeds them in batches and resolves each job's future.

    The worker takes the oldest job, then (while `batching` is on) waits up to `wait_ms` for more jobs with
    the same instruction until `max_batch` texts are gathered, and runs ONE `encode_fn(texts, instruction)`
    call for all of them. Jobs with another instruction wait for the next pass. A job is never split; one
    larger than `max_batch` runs alone. With `batching=False` every job runs alone, in arrival order.
    """

    def __init__(
        self,
        encode_fn: EncodeFn,
        *,
        max_batch: int = 64,
        wait_ms: float = 5.0,
        batching: bool = True,
        name: str = "encoder",
    ) -> None:
        if max_batch < 1:
            raise L2VError(f"max_batch must be at least 1, got {max_batch}")
        if wait_ms < 0:
            raise L2VError(f"batch wait must not be negative, got {wait_ms} ms")
        self.encode_fn = encode_fn
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.batching = batching
        self.stats = BatchStats()
        self._queue: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    def submit(self, texts: Sequence[str], instruction: str | None = None) -> Future:
        """Queue `texts`; the future resolves to their `Embedded` rows or to the encoder's error."""
        job = _Job(list(texts), instruction)
        with self._ready:
            if self._closed:
                raise L2VError("the embedding worker is shut down")
            self._queue.append(job)
            self._ready.notify()
        return job.future

    def encode(
        self, texts: Sequence[str], instruction: str | None = None, timeout: float | None = None
    ) -> Embedded:
        """Blocking `submit`: the `Embedded` rows, or the error the encoder raised for these texts."""
        return self.submit(texts, instruction).result(timeout)

    def close(self) -> None:
        """Stop the worker after the pass in flight; jobs still queued fail with an error."""
        with self._ready:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        for job in pending:
            job.future.set_exception(L2VError("the server is shutting down"))
        self._worker.join(timeout=30)

    def _run(self) -> None:
        """The worker loop; a job whose caller gave up (cancelled future) is dropped, not embedded."""
        while (jobs := self._next_batch()) is not None:
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if live:
                self._encode(live)

    def _next_batch(self) -> list[_Job] | None:
        """Block for the oldest job, then gather same-instruction jobs until full or the wait is over."""
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch, count = [first], len(first.texts)
            if not self.batching:
                return batch
            deadline = time.monotonic() + self.wait_s
            while count < self.max_batch:
                count += self._take_matching(first.instruction, self.max_batch - count, batch)
                remaining = deadline - time.monotonic()
                if count >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._ready.wait(remaining)
            return batch

    def _take_matching(self, instruction: str | None, room: int, batch: list[_Job]) -> int:
        """Move queued jobs with `instruction` that fit in `room` texts into `batch`; returns texts moved."""
        moved = 0
        for job in list(self._queue):
            if job.instruction == instruction and moved + len(job.texts) <= room:
                self._queue.remove(job)
                batch.append(job)
                moved += len(job.texts)
        return moved

    def _encode(self, jobs: list[_Job]) -> None:
        """One encode call for all jobs; if it fails, each job is retried alone so only the bad one fails."""
        texts = [text for job in jobs for text in job.texts]
        try:
            embedded = self.encode_fn(texts, jobs[0].instruction)
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:
                    self._encode([job])
                return
            self.stats.failed_requests += 1
            if not isinstance(exc, L2VError):
                log.exception("encoding failed")
            jobs[0].future.set_exception(exc)
            return
        self.stats.record(len(jobs), len(texts))
        start = 0
        for job in jobs:
            job.future.set_result(embedded[start : start + len(job.texts)])
            start += len(job.texts)
