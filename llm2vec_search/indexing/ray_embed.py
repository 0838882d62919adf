"""Embedding on a Ray cluster: discovery, hashing, extraction, chunking and the SQLite + FAISS writer stay in
this process; only chunk texts go to a Ray Data actor pool of encoders, and vectors stream back in order.

The model travels once per run, as the weights this process has already loaded and checked against the
index's fingerprint, put in Ray's object store. Workers need no shared file system, no model cache and no
GGUF conversion (a cluster node may have none of them), and they compute with exactly the weights the
fingerprint stands for. `ray` is an optional extra, imported only here.
"""

import copy
import logging
import math
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import L2VError
from .embedding import EMBED_BATCH_CHUNKS

if TYPE_CHECKING:
    from ..encoder import Encoder

RAY_EXTRA = 'Ray is not installed; install the extra with: pip install "l2v-search[ray]"'
LOCAL = "local"
# "local" (start an instance here), "auto" (the cluster this machine belongs to), ray://HOST:PORT (Ray
# Client) or HOST:PORT (the head node's GCS, for a driver on the cluster's network).
_ADDRESS = re.compile(r"^(local|auto|ray://[\w.\-]+:\d+|[\w.\-]+:\d+)$")
# A Ray Data run starts its actor pool (each actor rebuilds the model from the object store), so chunks go
# to Ray in windows large enough that this costs little next to embedding them.
WINDOW_CHUNKS = 32_768
# Without --ray-workers on a CPU-only cluster: one worker per this many CPUs (torch uses them as threads).
CPUS_PER_WORKER = 4


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise L2VError(RAY_EXTRA) from None
    return ray


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_reachable(address: str) -> None:
    """Ray keeps retrying an address that nothing listens on (for minutes); a plain connect tells at once."""
    if address in (LOCAL, "auto"):
        return
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise L2VError(f"cannot start or reach Ray at {address}: nothing answers there ({exc})") from None


def check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise L2VError(f"--ray-address {address!r} is not one of: auto, ray://HOST:PORT, HOST:PORT")
    return address


@dataclass(frozen=True)
class PoolSize:
    """The actor pool: `workers` encoders, each holding `cpus` CPUs (torch threads) and `gpus` GPUs."""

    workers: int
    cpus: int
    gpus: int

    def describe(self) -> str:
        each = f"{self.gpus} GPU" if self.gpus else f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}"
        return f"{self.workers} Ray worker{'s' if self.workers > 1 else ''} ({each} each)"


def pool_size(cluster_cpus: float, cluster_gpus: float, node_cpus: float, workers: int | None) -> PoolSize:
    """One worker per GPU where there are GPUs; otherwise CPU workers that share the cluster's CPUs (none
    bigger than its largest node). An explicit `workers` that cannot all run at once is refused."""
    gpus, cpus = int(cluster_gpus), int(cluster_cpus)
    if workers is not None and workers < 1:
        raise L2VError(f"--ray-workers must be at least 1, got {workers}")
    if gpus:
        count = workers or gpus
        if count > gpus:
            raise L2VError(f"--ray-workers {count} needs {count} GPUs; the Ray cluster has {gpus}")
        return PoolSize(count, 1, 1)
    count = workers or max(1, cpus // CPUS_PER_WORKER)
    if count > cpus:
        raise L2VError(f"--ray-workers {count} needs {count} CPUs; the Ray cluster has {cpus}")
    return PoolSize(count, max(1, min(cpus // count, int(node_cpus))), 0)


@dataclass
class ModelPayload:
    """What a worker needs to rebuild the driver's encoder: architecture, weights, tokenizer, settings."""

    config: Any
    weights: dict[str, np.ndarray]
    tokenizer: Any
    bidirectional: bool
    pooling: str
    max_length: int
    name: str
    fingerprint: str
    text: Any = None  # the llm2vec library's text handling, for its models (Encoder.text)
    head: Any = None  # a distilled model's linear head after pooling (Encoder.head), on the CPU


def model_payload(encoder: "Encoder") -> ModelPayload:
    import torch

    weights = {
        key: value.detach().to("cpu", torch.float32).numpy()
        for key, value in encoder.model.state_dict().items()
    }
    return ModelPayload(
        config=encoder.model.config,
        weights=weights,
        tokenizer=encoder.tokenizer,
        bidirectional=not encoder.model.config.is_causal,
        pooling=encoder.pooling,
        max_length=encoder.max_length,
        name=encoder.name,
        fingerprint=encoder.fingerprint,
        text=encoder.text,
        head=copy.deepcopy(encoder.head).cpu() if encoder.head is not None else None,
    )


def encoder_from_payload(payload: ModelPayload, device: str, dtype: str) -> "Encoder":
    import torch
    from transformers import AutoModel

    from ..encoder import Encoder, pick_device, set_bidirectional

    torch_device, torch_dtype = pick_device(device, dtype, payload.config.model_type)
    network = AutoModel.from_config(payload.config)
    network.load_state_dict({key: torch.from_numpy(value) for key, value in payload.weights.items()})
    set_bidirectional(network, payload.bidirectional)
    network.to(device=torch_device, dtype=torch_dtype)
    return Encoder(
        network,
        payload.tokenizer,
        pooling=payload.pooling,
        max_length=payload.max_length,
        name=payload.name,
        fingerprint=payload.fingerprint,
        text=payload.text,
        head=payload.head,
    )


class _EncoderWorker:
    """One Ray actor: builds the encoder once from the object store, then embeds the batches it is sent."""

    def __init__(self, payload_ref: list, device: str, dtype: str, threads: int) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        self.encoder = encoder_from_payload(ray.get(payload_ref[0]), device, dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(text) for text in batch["text"]])
        return {"row": batch["row"], "vector": vectors, "pid": np.full(len(vectors), os.getpid())}


class RayEmbedder:
    """A `ChunkEmbedder` whose encoders are a Ray Data actor pool; lost workers are restarted by Ray and
    their batches redone. `worker_pids` collects the processes that embedded something (to report, or for
    a test to kill one)."""

    window = WINDOW_CHUNKS

    def __init__(
        self,
        ray: Any,
        payload_ref: Any,
        pool: PoolSize,
        device: str = "auto",
        dtype: str = "auto",
        batch_chunks: int = EMBED_BATCH_CHUNKS,
    ) -> None:
        self.ray = ray
        self.payload_ref = payload_ref
        self.pool = pool
        self.device, self.dtype = device, dtype
        self.batch_chunks = batch_chunks
        self.worker_pids: set[int] = set()

    def embed(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        count = len(texts)
        if not count:
            return
        rows = [{"row": i, "text": text} for i, text in enumerate(texts)]
        batches = math.ceil(count / self.batch_chunks)
        dataset = self.ray.data.from_items(rows, override_num_blocks=batches)
        vectors = dataset.map_batches(
            _EncoderWorker,
            batch_size=self.batch_chunks,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=min(self.pool.workers, batches)),
            num_cpus=self.pool.cpus,
            num_gpus=self.pool.gpus,
            fn_constructor_kwargs={
                "payload_ref": [self.payload_ref],  # in a list, so that each actor fetches it itself
                "device": self.device,
                "dtype": self.dtype,
                "threads": self.pool.cpus,
            },
        )  # Ray Data restarts a dead actor and retries its batches (max_restarts=-1, max_task_retries=-1)
        try:
            yield from self._in_order(vectors.iter_batches(batch_size=None, batch_format="numpy"), count)
        except self.ray.exceptions.RayError as exc:  # what Ray could not recover from by retrying
            raise L2VError(f"embedding on Ray failed: {first_line(exc)}") from exc

    def _in_order(self, batches: Iterator[dict[str, np.ndarray]], count: int) -> Iterator[np.ndarray]:
        """Yield vectors in row order as soon as each leading run of rows is complete."""
        result: np.ndarray | None = None
        arrived = np.zeros(count, dtype=bool)
        ready = 0
        for batch in batches:
            if result is None:
                result = np.empty((count, batch["vector"].shape[1]), dtype=np.float32)
            result[batch["row"]] = batch["vector"]
            arrived[batch["row"]] = True
            self.worker_pids.update(int(pid) for pid in np.unique(batch["pid"]))
            end = ready
            while end < count and arrived[end]:
                end += 1
            if end > ready:
                yield result[ready:end].copy()
                ready = end


@contextmanager
def ray_embedder(
    encoder: "Encoder",
    address: str = LOCAL,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_chunks: int = EMBED_BATCH_CHUNKS,
    cpus: int | None = None,
) -> Iterator[RayEmbedder]:
    """Connect to Ray (`local`: start a private instance with `cpus` CPUs, default all, stopped on exit), put
    `encoder`'s weights in the object store once, and yield an embedder for `Index.update(embedder=...)`."""
    check_reachable(check_address(address))
    ray = import_ray()
    local = {"num_cpus": cpus} if address == LOCAL else {}
    try:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", **local
        )
    # Ray raises ConnectionError, RuntimeError, or a bare Exception (start-up timeout).
    except Exception as exc:
        raise L2VError(f"cannot start or reach Ray at {address}: {first_line(exc)}") from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run INFO lines, on our stderr
        resources = ray.cluster_resources()
        node_cpus = max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])
        gpus = 0 if device == "cpu" else resources.get("GPU", 0)
        pool = pool_size(resources.get("CPU", 0), gpus, node_cpus, workers)
        if device.startswith("cuda") and not pool.gpus:
            raise L2VError(f"--device {device} asked for, but the Ray cluster has no GPUs")
        payload_ref = ray.put(model_payload(encoder))
        yield RayEmbedder(ray, payload_ref, pool, device, dtype, batch_chunks)
    finally:
        ray.shutdown()
