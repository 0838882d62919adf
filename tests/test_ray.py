"""`index --ray` on a real local Ray instance (`ray start --head` on 127.0.0.1 with 2 CPUs): the same chunks
and vectors as a local run, through the CLI and the library, and a worker killed mid-run costs a retry."""

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import astuple
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.ray_embed import (
    PoolSize,
    encoder_from_payload,
    model_payload,
    pool_size,
    ray_embedder,
)
from tests.conftest import assert_user_error, free_port, run_cli, write_numbered_notes

pytestmark = pytest.mark.ray
RAY = Path(sys.executable).with_name("ray")
FILES = 120  # ~360 chunks: 45 batches of 8 in the worker-kill test
CHUNKING = ("--chunk-tokens", "16", "--overlap-tokens", "4")
CLI_SECONDS = 600  # generous: a busy 2-CPU machine runs a Ray driver's start-up slowly


cli = partial(run_cli, timeout=CLI_SECONDS)


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head node of our own, in its own process group, killed as a group at the end (`ray stop`
    would stop every Ray instance of this user on the machine)."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have 107 bytes
    command = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}"]
    command += ["--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp_dir}"]
    log = temp_dir / "head.log"
    with pytest.MonkeyPatch.context() as env:
        # One authentication mode for the head and every driver (this process, CLI subprocesses): Ray turns
        # token authentication on for a process that finds ~/.ray/auth_token, which a local ray.init writes.
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        with open(log, "w") as output:
            head = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while "Ray runtime started" not in log.read_text():
                assert head.poll() is None, f"ray start exited: {log.read_text()}"
                assert time.monotonic() < deadline, "ray start did not finish in 3 minutes"
                time.sleep(0.5)
            yield f"127.0.0.1:{port}"
        finally:
            # A few seconds to stop cleanly, then the whole group at once: a graceful stop waits ~30 s on
            # its own processes, and nothing of this throwaway head outlives its temp dir.
            os.killpg(head.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
            shutil.rmtree(temp_dir, ignore_errors=True)


def chunks_and_vectors(folder: Path) -> dict[tuple, np.ndarray]:
    """Each committed chunk (path, ordinal, text, offsets, heading) with its vector, as stored."""
    with Index.open(folder) as index:
        ids, data = index.vectors.vectors()
        rows = index.store.chunks_by_id(ids.tolist())
    return {astuple(rows[int(i)])[1:]: vector for i, vector in zip(ids, data, strict=True)}


def assert_same_index(ray_folder: Path, local_folder: Path) -> None:
    via_ray, local = chunks_and_vectors(ray_folder), chunks_and_vectors(local_folder)
    assert via_ray.keys() == local.keys() and len(local) > 100
    cosines = [float(np.dot(via_ray[key], local[key])) for key in local]
    assert min(cosines) >= 0.9999


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_numbered_notes(tmp_path_factory.mktemp("ray-corpus"), FILES)


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, corpus, tiny_model_dir) -> Path:
    """The reference: the same corpus indexed here, without Ray."""
    folder = tmp_path_factory.mktemp("local") / "local"
    with Index.open(
        folder, model=str(tiny_model_dir), create=True, chunk_tokens=16, overlap_tokens=4
    ) as index:
        index.update([corpus])
    return folder


def test_cli_index_on_ray_equals_a_local_run(ray_head, corpus, local_index, tiny_model_dir, tmp_path):
    model = ("--model", str(tiny_model_dir), *CHUNKING)
    folder = tmp_path / "via-ray"
    result = cli(
        "index",
        str(corpus),
        "--name",
        str(folder),
        *model,
        "--ray-address",
        ray_head,
        "--ray-workers",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "embedded on 2 Ray workers (1 CPU each)" in result.stderr
    assert_same_index(folder, local_index)
    rerun = cli("index", str(corpus), "--name", str(folder), "--ray-address", ray_head, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    with Index.open(folder) as index:  # incremental as ever
        assert index.status().last_run["chunks_added"] == 0


def test_worker_killed_mid_run_costs_a_retry(ray_head, corpus, local_index, tiny_model_dir, tmp_path):
    folder = tmp_path / "killed"
    killed: list[int] = []
    with (
        Index.open(
            folder, model=str(tiny_model_dir), create=True, chunk_tokens=16, overlap_tokens=4
        ) as index,
        ray_embedder(index.encoder, ray_head, workers=2, batch_chunks=8) as embedder,
    ):

        def kill_first_worker(event) -> None:
            if event.chunks_embedded and not killed:
                killed.append(min(embedder.worker_pids))
                os.kill(killed[0], signal.SIGKILL)

        summary = index.update([corpus], progress=kill_first_worker, embedder=embedder)
    assert killed and summary.chunks_added > 100
    assert len(embedder.worker_pids - set(killed)) >= 1
    assert_same_index(folder, local_index)


def test_ray_user_errors_are_one_line(ray_head, corpus, tiny_model_dir, tmp_path):
    model = ("--model", str(tiny_model_dir))
    assert_user_error(cli("index", str(corpus), "--ray-address", "no address", cwd=tmp_path), "--ray-address")
    assert_user_error(cli("index", str(corpus), "--ray-workers", "2", cwd=tmp_path), "needs --ray")
    too_many = cli(
        "index", str(corpus), *model, "--ray-address", ray_head, "--ray-workers", "3", cwd=tmp_path
    )
    assert_user_error(too_many, "the Ray cluster has 2")
    unreachable = cli("index", str(corpus), *model, "--ray-address", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert_user_error(unreachable, "cannot start or reach Ray")


@pytest.mark.parametrize("with_head", [False, True], ids=["plain", "distilled-head"])
def test_model_payload_rebuilds_the_same_encoder(tiny_model_dir, with_head):
    """What travels through the object store gives the vectors of the encoder it came from (no Ray needed)."""
    import torch

    from llm2vec_search.encoder import Encoder

    encoder = Encoder.from_pretrained(tiny_model_dir)
    if with_head:
        torch.manual_seed(0)
        head = torch.nn.Linear(encoder.dim, 8)
        encoder = Encoder(encoder.model, encoder.tokenizer, name="headed", fingerprint="headed", head=head)
    rebuilt = encoder_from_payload(pickle.loads(pickle.dumps(model_payload(encoder))), "cpu", "float32")
    texts = ["a dog runs in the park", "stock markets fell"]
    assert rebuilt.fingerprint == encoder.fingerprint and rebuilt.pooling == encoder.pooling
    np.testing.assert_allclose(rebuilt.encode(texts), encoder.encode(texts), atol=1e-6)


def test_pool_size_per_gpu_else_by_cpu():
    assert pool_size(16, 4, 8, None) == PoolSize(4, 1, 1)
    assert pool_size(16, 0, 8, None) == PoolSize(4, 4, 0)
    assert pool_size(16, 0, 8, 1) == PoolSize(1, 8, 0)  # no worker bigger than a node
    assert pool_size(2, 0, 2, None) == PoolSize(1, 2, 0)
    with pytest.raises(L2VError, match="needs 3 GPUs"):
        pool_size(16, 2, 8, 3)
