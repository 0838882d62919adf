"""How a text becomes the model's input: special tokens around it, the instruction before it, the positions
pooled. Plain Python, so that the torch-free query path (`onnx_query`) builds exactly what `Encoder` builds.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import L2VError


@dataclass
class Tokenized:
    ids: list[int]
    pool_positions: list[int]
    truncated: bool


def instruction_prompt(instruction: str) -> str:
    """The text an instruction is tokenized as: stripped, ended by a colon unless it ends a sentence, and a
    space before the text."""
    text = instruction.strip()
    if text[-1] not in ":.?!\n":
        text += ":"
    return text + " "


def assemble(
    text_ids: Sequence[int],
    instruction_ids: Sequence[int],
    prefix: Sequence[int],
    suffix: Sequence[int],
    pooling: str,
    max_length: int,
) -> Tokenized:
    """[prefix] + instruction + text (cut to fit `max_length`) + [suffix], and the positions `pooling` reads:
    the text's tokens for the means, the last token or the first. The instruction is attended to, never
    pooled."""
    budget = max_length - len(prefix) - len(instruction_ids) - len(suffix)
    if budget < 1:
        raise L2VError(f"the instruction alone fills max_length={max_length} tokens")
    kept = list(text_ids[:budget])
    ids = [*prefix, *instruction_ids, *kept, *suffix]
    if pooling == "last_token":
        positions = [len(ids) - 1]
    elif pooling == "bos":
        positions = [0]
    else:
        start = len(prefix) + len(instruction_ids)
        positions = list(range(start, start + len(kept)))
    return Tokenized(ids, positions, truncated=len(text_ids) > budget)


def padded_batch(items: Sequence[Tokenized], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids right-padded with `pad_id`, attention mask, pool mask), each (batch, longest) int64."""
    width = max(len(item.ids) for item in items)
    ids = np.full((len(items), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(items), width), dtype=np.int64)
    pool_mask = np.zeros((len(items), width), dtype=np.int64)
    for row, item in enumerate(items):
        ids[row, : len(item.ids)] = item.ids
        attention[row, : len(item.ids)] = 1
        pool_mask[row, item.pool_positions] = 1
    return ids, attention, pool_mask


def validate_texts(texts: Sequence[str]) -> None:
    """Refuse what cannot be embedded, naming the text: non-strings and empty or whitespace-only strings."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise L2VError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise L2VError(f"text {i} is empty or only whitespace; there is nothing to embed")
