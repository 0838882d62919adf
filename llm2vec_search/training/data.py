"""Training data: texts from .txt/.jsonl(.gz) files, MNTP blocks and masking, (query, positive, negative)
pairs, and weighted mixtures of pair sources.

Every stream here is a pure function of the files and the seed, so a resumed run can skip exactly the batches
the interrupted run consumed and see the same data afterwards.
"""

import gzip
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import TypeVar

import torch

from ..errors import L2VError

T = TypeVar("T")

IGNORE_INDEX = -100  # label value the MNTP loss skips
TOKENIZE_CHUNK = 256  # texts tokenized at a time while packing


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except FileNotFoundError as exc:
        raise L2VError(f"training data file not found: {path}") from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise L2VError(f"cannot read training data {path}: {exc}") from exc


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise L2VError(f"{path}:{number}: not a JSON line ({exc})") from exc
        if not isinstance(record, dict):
            raise L2VError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def read_texts(paths: Sequence[Path], field: str = "text") -> list[str]:
    """Texts from .txt files (one per non-empty line) and .jsonl files (the `field` of each object);
    either may be gzipped (.gz)."""
    texts: list[str] = []
    for path in paths:
        path = Path(path)
        if _is_jsonl(path):
            for number, record in _jsonl_records(path):
                value = record.get(field)
                if not isinstance(value, str):
                    raise L2VError(f"{path}:{number}: no string field {field!r} (use --text-field)")
                if value.strip():
                    texts.append(value.strip())
        else:
            texts.extend(line.strip() for _, line in _read_lines(path) if line.strip())
    if not texts:
        raise L2VError(f"no training text in {', '.join(str(p) for p in paths)}")
    return texts


@dataclass(frozen=True)
class Pair:
    """One supervised example: a query, a passage that answers it, and optionally a hard negative."""

    query: str
    positive: str
    negative: str | None = None


@dataclass(frozen=True)
class PairSource:
    """One file of pairs in a training mixture: drawn for a share `weight` of the batches, its queries
    prefixed with `instruction` (None: the model's query instruction)."""

    name: str
    pairs: Sequence[Pair]
    weight: float = 1.0
    instruction: str | None = None


def parse_source_spec(spec: str) -> tuple[Path, float]:
    """`FILE` or `FILE:WEIGHT` → (path, weight); a weight is a positive number after the last colon."""
    head, colon, tail = spec.rpartition(":")
    if not colon:
        return Path(spec), 1.0
    try:
        weight = float(tail)
    except ValueError:
        return Path(spec), 1.0  # a colon that is part of the file name
    if not weight > 0:
        raise L2VError(f"{spec}: the mixing weight must be a positive number")
    return Path(head), weight


def read_sources(specs: Sequence[str], instructions: dict[str, str] | None = None) -> list[PairSource]:
    """A mixture from `FILE[:WEIGHT]` specs; `instructions` maps a file's name (or its path as given) to
    the query instruction its pairs train with."""
    instructions = dict(instructions or {})
    sources = []
    for spec in specs:
        path, weight = parse_source_spec(spec)
        instruction = instructions.pop(str(path), instructions.pop(path.name, None))
        sources.append(PairSource(path.name, read_pairs([path]), weight, instruction))
    if instructions:
        raise L2VError(f"instruction given for a file that is not in the data: {', '.join(instructions)}")
    return sources


def mixed_batches(
    sources: Sequence[PairSource], batch_size: int, seed: int
) -> Iterator[tuple[PairSource, list[Pair]]]:
    """Batches each drawn whole from one source, the source picked at random in proportion to its weight,
    so in-batch negatives are of the same kind as the positive (a question never competes with a sentence
    from another task). A pure function of the sources and the seed, so resuming replays it exactly."""
    streams = [shuffled_forever(source.pairs, seed + number) for number, source in enumerate(sources)]
    pick = random.Random(seed)
    while True:
        (number,) = pick.choices(range(len(sources)), [source.weight for source in sources])
        yield sources[number], [next(streams[number]) for _ in range(batch_size)]


def read_pairs(paths: Sequence[Path]) -> list[Pair]:
    """Pairs from JSONL lines `{"query": ..., "positive": ..., "negative": ...}` (negative optional);
    .jsonl or .jsonl.gz."""
    pairs = []
    for path in paths:
        for number, record in _jsonl_records(Path(path)):
            fields = {}
            for name in ("query", "positive", "negative"):
                value = record.get(name)
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise L2VError(f"{path}:{number}: {name!r} must be a non-empty string")
                fields[name] = value.strip() if value else None
            if not fields["query"] or not fields["positive"]:
                raise L2VError(f"{path}:{number}: needs 'query' and 'positive' fields")
            pairs.append(Pair(**fields))
    if not pairs:
        raise L2VError(f"no training pairs in {', '.join(str(p) for p in paths)}")
    return pairs


def shuffled_forever(items: Sequence[T], seed: int) -> Iterator[T]:
    """The items in a new seeded order each epoch, endlessly (short data sets repeat)."""
    for epoch in count():
        order = list(range(len(items)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for index in order:
            yield items[index]


def batched(stream: Iterator[T], size: int) -> Iterator[list[T]]:
    while True:
        yield [next(stream) for _ in range(size)]


def packed_blocks(tokenizer, texts: Sequence[str], block_length: int, seed: int) -> Iterator[list[int]]:
    """Token blocks of exactly `block_length` ids: the shuffled texts (each with its special tokens)
    concatenated and cut, as LLM2Vec's MNTP does, so no compute is spent on padding."""
    stream = shuffled_forever(texts, seed)
    buffer: list[int] = []
    while True:
        while len(buffer) < block_length:
            chunk = [next(stream) for _ in range(TOKENIZE_CHUNK)]
            for ids in tokenizer(chunk)["input_ids"]:
                buffer.extend(ids)
        yield buffer[:block_length]
        buffer = buffer[block_length:]


def mntp_mask_id(tokenizer) -> int:
    """The tokenizer's mask token, else "_" (what LLM2Vec uses for Llama and Mistral, which have no mask
    token): a plain, frequent, meaning-free token the model learns to read as "predict me"."""
    if tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    underscore = tokenizer.convert_tokens_to_ids("_")
    if underscore is None or underscore == tokenizer.unk_token_id:
        underscore = tokenizer("_", add_special_tokens=False)["input_ids"][-1]
    return int(underscore)


def mask_for_mntp(
    input_ids: torch.Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking: pick `mask_prob` of the ordinary tokens; of those 80% become the mask token,
    10% a random token and 10% stay. Labels hold the original id at picked positions, IGNORE_INDEX elsewhere.

    Position 0 is never picked: MNTP predicts token i from the output at i-1, and token 0 has none.
    """
    candidates = ~torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    candidates[:, 0] = False
    probability = torch.full(input_ids.shape, mask_prob)
    picked = candidates & torch.bernoulli(probability, generator=generator).bool()
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    to_mask = picked & torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool()
    masked[to_mask] = mask_id
    to_random = (
        picked & ~to_mask & torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool()
    )
    random_ids = torch.randint(vocab_size, input_ids.shape, dtype=input_ids.dtype, generator=generator)
    masked[to_random] = random_ids[to_random]
    return masked, labels
