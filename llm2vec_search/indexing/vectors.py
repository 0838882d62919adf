"""The FAISS half of an index (`vectors.faiss`): one wrapper over the index kinds, with atomic saves.

Vectors are L2-normalized, so inner product is cosine similarity. Kinds:
- "flat": exact search, `IndexIDMap2(IndexFlatIP)` — the default below `AUTO_ANN_THRESHOLD` vectors;
- "ivf" / "ivfsq" / "ivfpq": inverted lists (nlist ≈ 4·sqrt(n), trained on a sample of the index's own
  vectors) holding raw vectors, 8-bit scalar codes (1 byte a dimension), or product-quantized codes
  (1 byte per 8 dimensions: approximate, for 10^8 vectors on one machine; changing kind from it re-encodes
  its approximations);
- "hnsw": a graph (`IndexHNSWFlat`); FAISS cannot delete from it, so removals rebuild it.
"auto" keeps flat below `AUTO_ANN_THRESHOLD`, uses IVF above it and 8-bit IVF from `AUTO_SQ_THRESHOLD`.
Ids are chunk ids from SQLite. The README's scaling section gives each kind's measured memory.
"""

import errno
import math
import os
from pathlib import Path

import faiss
import numpy as np

from ..errors import L2VError, one_line, write_failed

VECTORS_NAME = "vectors.faiss"
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfsq", "ivfpq")
AUTO_ANN_THRESHOLD = 50_000
# From here raw vectors take gigabytes (1.5 GB a million at the default's 384 dimensions); 8-bit, a quarter.
AUTO_SQ_THRESHOLD = 1_000_000
# IVF needs enough vectors to train its centroids; below this an explicit IVF index stays flat.
MIN_IVF_TRAIN = 2_000
# Product quantization trains 256 centroids per sub-vector, for which FAISS wants 39 points each.
MIN_PQ_TRAIN = 256 * 39
PQ_DIMS_PER_BYTE = 8
HNSW_M = 32
HNSW_EF_SEARCH = 128
IVF_MAX_NPROBE = 32
# k-means for IVF trains on at most this many points per list (FAISS wants ≥ 39): enough for good centroids,
# and it keeps training at 1M vectors to a minute or two on a laptop CPU instead of half an hour.
IVF_TRAIN_PER_LIST = 64
# Bytes per write when saving: FAISS hands a large index over in pieces of at most this size.
WRITE_BLOCK_BYTES = 1 << 22


def kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIDMap2):
        return "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if isinstance(ivf, faiss.IndexIVFPQ):
        return "ivfpq"
    return "ivfsq" if isinstance(ivf, faiss.IndexIVFScalarQuantizer) else "ivf"


def wanted_kind(index_type: str, count: int) -> str:
    """The structure an index of `count` vectors should have for the requested `index_type`."""
    if index_type not in INDEX_TYPES:
        raise L2VError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        if count >= AUTO_SQ_THRESHOLD:
            return "ivfsq"
        return "ivf" if count >= AUTO_ANN_THRESHOLD else "flat"
    if index_type in ("ivf", "ivfsq") and count < MIN_IVF_TRAIN:
        return "flat"
    if index_type == "ivfpq" and count < MIN_PQ_TRAIN:
        return "flat"
    return index_type


def ivf_lists(count: int) -> int:
    """≈ 4·sqrt(n) lists, but no more than n/39 so that k-means has the ~39 points per centroid it wants."""
    return max(1, min(round(4 * math.sqrt(count)), count // 39))


def pq_bytes(dim: int) -> int:
    """Bytes per product-quantized vector: about one per 8 dimensions, a divisor of `dim` as FAISS needs."""
    return max(m for m in range(1, max(1, dim // PQ_DIMS_PER_BYTE) + 1) if dim % m == 0)


def _empty(kind: str, dim: int, train: np.ndarray | None = None) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap2(graph)
    assert train is not None
    nlist = ivf_lists(len(train))
    # "np": no polysemous training (codes ordered for Hamming pre-filtering, which we do not use; minutes)
    codec = {"ivf": "Flat", "ivfsq": "SQ8", "ivfpq": f"PQ{pq_bytes(dim)}np"}[kind]
    index = faiss.index_factory(dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
    sample_size = max(IVF_TRAIN_PER_LIST * nlist, MIN_PQ_TRAIN if kind == "ivfpq" else 0)
    if len(train) > sample_size:
        sample = np.random.default_rng(0).choice(len(train), sample_size, replace=False)
        train = train[np.sort(sample)]
    index.train(train)
    index.nprobe = min(nlist, IVF_MAX_NPROBE)
    # A hash-table direct map lets us reconstruct vectors by chunk id (needed to change kinds later).
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


class VectorIndex:
    """Chunk-id-keyed vectors in memory; `save` writes them to disk atomically."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def create(cls, dim: int) -> "VectorIndex":
        return cls(_empty("flat", dim))

    @classmethod
    def load(cls, path: Path) -> "VectorIndex":
        try:
            return cls(faiss.read_index(str(path)))
        except RuntimeError as exc:
            raise L2VError(f"cannot read {path}: {one_line(exc)}") from exc

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        return kind_of(self.index)

    def ids(self) -> np.ndarray:
        """All stored chunk ids (int64)."""
        if isinstance(self.index, faiss.IndexIDMap2):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self.index)
        lists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(ivf.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything stored; used to change the index kind."""
        ids = self.ids()
        if isinstance(self.index, faiss.IndexIDMap2):
            return ids, self.index.index.reconstruct_n(0, self.count)
        data = (
            np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim))
        )
        return ids, data.astype(np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if vectors.shape[1] != self.dim:
            raise L2VError(f"vectors have {vectors.shape[1]} dims but the index holds {self.dim}")
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )

    def remove(self, ids) -> int:
        """Remove the given chunk ids (unknown ids are ignored); returns how many were removed."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids) or not self.count:
            return 0
        if self.kind == "hnsw":
            return self._rebuild_without(ids)
        if self.kind == "flat":
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        # IVF's hash-table direct map only accepts an explicit array of ids.
        return int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))

    def _rebuild_without(self, ids: np.ndarray) -> int:
        stored, data = self.vectors()
        keep = ~np.isin(stored, ids)
        fresh = _empty("hnsw", self.dim)
        if keep.any():
            fresh.add_with_ids(data[keep], stored[keep])
        self.index = fresh
        return int((~keep).sum())

    def reshape(self, index_type: str) -> bool:
        """Switch to the kind `index_type` wants at this size (or retrain a grown IVF); True if it changed."""
        kind = wanted_kind(index_type, self.count)
        stale_ivf = (
            kind.startswith("ivf")
            and kind == self.kind
            and (ivf_lists(self.count) > 2 * faiss.extract_index_ivf(self.index).nlist)
        )
        if kind == self.kind and not stale_ivf:
            return False
        ids, data = self.vectors()
        fresh = _empty(kind, self.dim, train=data)
        if len(ids):
            fresh.add_with_ids(data, ids)
        self.index = fresh
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k); missing results have id -1."""
        k = max(1, min(k, self.count))
        if not self.count:
            empty = np.full((len(queries), 1), -1, dtype=np.int64)
            return np.zeros(empty.shape, dtype=np.float32), empty
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, path: Path) -> None:
        """Write `path.tmp`, fsync, rename over `path`, fsync the folder: readers and crashes see the old or
        the new file. FAISS's own writer ignores a failing `fclose` (a full disk), so the bytes go through
        Python, which reports every failed write; then `L2VError`, the temporary file is removed and `path`
        is left as it was."""
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as handle:
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(handle.write, WRITE_BLOCK_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
                written = handle.tell()
            if os.stat(tmp).st_size != written:
                raise OSError(errno.EIO, f"{written} bytes written but {os.stat(tmp).st_size} on disk")
            os.replace(tmp, path)
            fsync_folder(path.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_failed(path, exc.strerror or str(exc)) from exc


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
