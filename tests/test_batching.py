"""The micro-batcher with a real (tiny) encoder: same vectors as direct calls, fewer passes, one at a time."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.server.backend import encode_with_token_counts
from llm2vec_search.server.batching import MicroBatcher
from tests.conftest import tiny_encoder

TEXTS = [f"document number {i} about cats and dogs" for i in range(24)]


class RecordingEncoder:
    """Calls a real tiny encoder and records each pass and whether two passes ever overlapped."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.encoder = tiny_encoder()
        self.calls: list[tuple[int, str | None]] = []
        self.delay_s = delay_s
        self.running = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, texts: list[str], instruction: str | None):
        with self._lock:
            self.running += 1
            self.overlapped |= self.running > 1
        try:
            time.sleep(self.delay_s)
            self.calls.append((len(texts), instruction))
            return encode_with_token_counts(self.encoder, texts, instruction)
        finally:
            with self._lock:
                self.running -= 1


def submit_concurrently(batcher: MicroBatcher, requests: list[tuple[list[str], str | None]]):
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda request: batcher.encode(*request, timeout=30), requests))


def test_concurrent_requests_share_passes_and_get_their_own_vectors():
    recorder = RecordingEncoder(delay_s=0.05)
    batcher = MicroBatcher(recorder, max_batch=64, wait_ms=50)
    try:
        requests = [([text], None) for text in TEXTS[:8]] + [(TEXTS[8:12], None)]
        results = submit_concurrently(batcher, requests)
    finally:
        batcher.close()
    for (texts, _), result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.vectors, recorder.encoder.encode(texts), atol=1e-5)
        assert result.tokens.shape == (len(texts),) and (result.tokens > 0).all()
    assert len(recorder.calls) < len(requests)
    assert batcher.stats.largest_batch_requests > 1
    assert batcher.stats.requests == len(requests) and batcher.stats.texts == 12
    assert not recorder.overlapped


def test_instruction_groups_never_mix_and_keep_their_instruction():
    recorder = RecordingEncoder(delay_s=0.05)
    batcher = MicroBatcher(recorder, max_batch=64, wait_ms=50)
    instruction = "Retrieve passages that answer the question"
    try:
        requests = [([text], instruction if i % 2 else None) for i, text in enumerate(TEXTS[:10])]
        results = submit_concurrently(batcher, requests)
    finally:
        batcher.close()
    for (texts, given), result in zip(requests, results, strict=True):
        np.testing.assert_allclose(
            result.vectors, recorder.encoder.encode(texts, instruction=given), atol=1e-5
        )
    assert {call_instruction for _, call_instruction in recorder.calls} == {None, instruction}
    assert sum(size for size, _ in recorder.calls) == 10


def test_max_batch_caps_a_pass_but_never_splits_a_request():
    recorder = RecordingEncoder(delay_s=0.02)
    batcher = MicroBatcher(recorder, max_batch=4, wait_ms=30)
    try:
        requests = [([text], None) for text in TEXTS[:12]] + [(TEXTS[12:18], None)]
        submit_concurrently(batcher, requests)
    finally:
        batcher.close()
    assert 6 in [size for size, _ in recorder.calls]
    assert all(size <= 4 for size, _ in recorder.calls if size != 6)


def test_without_batching_every_request_runs_alone():
    recorder = RecordingEncoder(delay_s=0.02)
    batcher = MicroBatcher(recorder, batching=False)
    try:
        submit_concurrently(batcher, [([text], None) for text in TEXTS[:6]])
    finally:
        batcher.close()
    assert [size for size, _ in recorder.calls] == [1] * 6
    assert batcher.stats.largest_batch_requests == 1 and not recorder.overlapped


def test_a_bad_request_fails_alone():
    recorder = RecordingEncoder(delay_s=0.05)
    batcher = MicroBatcher(recorder, wait_ms=50)
    try:
        futures = [batcher.submit([TEXTS[0]]), batcher.submit(["   "]), batcher.submit([TEXTS[1]])]
        good_first, good_last = futures[0].result(30), futures[2].result(30)
        with pytest.raises(L2VError, match="empty"):
            futures[1].result(30)
    finally:
        batcher.close()
    np.testing.assert_allclose(good_first.vectors, recorder.encoder.encode([TEXTS[0]]), atol=1e-5)
    assert good_last.vectors.shape == (1, recorder.encoder.dim)
    assert batcher.stats.failed_requests == 1


def test_closed_batcher_refuses_work_and_fails_queued_jobs():
    recorder = RecordingEncoder(delay_s=0.3)
    batcher = MicroBatcher(recorder, batching=False)
    in_flight = batcher.submit([TEXTS[0]])
    deadline = time.monotonic() + 10
    while not recorder.running and time.monotonic() < deadline:
        time.sleep(0.005)
    queued = batcher.submit([TEXTS[1]])
    batcher.close()
    assert in_flight.result(30).vectors.shape[0] == 1
    with pytest.raises(L2VError, match="shutting down"):
        queued.result(30)
    with pytest.raises(L2VError, match="shut down"):
        batcher.submit([TEXTS[2]])


def test_a_cancelled_request_is_skipped_and_the_worker_lives_on():
    recorder = RecordingEncoder(delay_s=0.2)
    batcher = MicroBatcher(recorder, batching=False)
    try:
        busy = batcher.submit([TEXTS[0]])
        abandoned = batcher.submit([TEXTS[1]])
        assert abandoned.cancel()
        after = batcher.submit([TEXTS[2]])
        assert busy.result(30).vectors.shape[0] == after.result(30).vectors.shape[0] == 1
    finally:
        batcher.close()
    assert batcher.stats.requests == 2 and len(recorder.calls) == 2


@pytest.mark.parametrize(("max_batch", "wait_ms"), [(0, 5), (8, -1)])
def test_bad_settings_are_user_errors(max_batch, wait_ms):
    with pytest.raises(L2VError):
        MicroBatcher(RecordingEncoder(), max_batch=max_batch, wait_ms=wait_ms)
