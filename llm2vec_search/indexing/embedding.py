"""How the update pipeline turns chunk texts into vectors: in this process by default, or elsewhere (a Ray
cluster, see `ray_embed`) through the same small interface, so that the index's writer does not change."""

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..encoder import Encoder

EMBED_BATCH_CHUNKS = 128


class ChunkEmbedder(Protocol):
    """The writer queues `window` chunks, then calls `embed` with their texts."""

    window: int

    def embed(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """Vectors for `texts` in order, in consecutive slices yielded as each is ready (each row stored as
        it arrives, so a slow remote pool streams into the index instead of arriving in one piece)."""
        ...


class LocalEmbedder:
    """The index's own encoder, in this process, one batch at a time; `encoder` gives it (loading the model
    only when there is something to embed)."""

    window = EMBED_BATCH_CHUNKS

    def __init__(self, encoder: "Callable[[], Encoder]") -> None:
        self.encoder = encoder

    def embed(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        yield self.encoder().encode(list(texts))
