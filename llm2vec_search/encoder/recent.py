"""The vectors of recently embedded texts, so that a repeated query (in a REPL session, across a server's
clients) skips the model. Plain Python and numpy: both query paths use it."""

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np

# Query vectors kept by default: 1,024 × 384 floats, 1.6 MB for the default model.
QUERY_CACHE_SIZE = 1024


class RecentVectors:
    """The last `size` (key → vector) pairs embedded; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, keys: Sequence[Hashable], embed: Callable[[list[Hashable]], np.ndarray]) -> np.ndarray:
        """One row per key: kept vectors as they are, the others from `embed(missing keys)` (each once)."""
        missing = list(dict.fromkeys(key for key in keys if key not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, embed(missing), strict=True))
        output = np.stack([self._vectors[key] for key in keys])
        for key in keys:
            self._vectors.move_to_end(key)
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)
        return output
