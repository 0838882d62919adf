"""Semantic textual similarity: read scored sentence pairs, score an encoder by Spearman correlation.

Two tab-separated formats, told apart by the first line's field count:
- STS Benchmark: genre, file, year, id, score, s1, s2 (extra trailing columns are ignored; no csv quoting);
- simple: score, s1, s2 (a first line whose score is not a number is a header).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import L2VError

STSB_FIELDS = 7
SIMPLE_FIELDS = 3


@dataclass
class StsPair:
    score: float
    first: str
    second: str


@dataclass
class StsResult:
    spearman: float  # Spearman correlation × 100 between cosine similarity and the gold score
    pairs: int
    sentences: int  # distinct sentences embedded
    seconds: float


def load_sts(path: Path) -> list[StsPair]:
    """Read every pair; a malformed line is an `L2VError` naming the file and line."""
    path = Path(path)
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise L2VError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    pairs: list[StsPair] = []
    layout: str | None = None
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise L2VError(f"{path} line {number}: not UTF-8 text") from exc
        if not line.strip():
            continue
        fields = line.split("\t")
        if layout is None:
            layout = _layout(fields, path, number)
            if layout == "simple" and not _is_float(fields[0]):
                continue  # header
        pairs.append(_pair(fields, layout, path, number))
    if not pairs:
        raise L2VError(f"{path}: no sentence pairs found")
    return pairs


def _layout(fields: list[str], path: Path, number: int) -> str:
    if len(fields) >= STSB_FIELDS:
        return "stsb"
    if len(fields) == SIMPLE_FIELDS:
        return "simple"
    raise L2VError(
        f"{path} line {number}: {len(fields)} tab-separated fields; expected STS-B "
        "(genre, file, year, id, score, s1, s2) or score<TAB>s1<TAB>s2"
    )


def _pair(fields: list[str], layout: str, path: Path, number: int) -> StsPair:
    if layout == "stsb":
        if len(fields) < STSB_FIELDS:
            raise L2VError(f"{path} line {number}: {len(fields)} fields, an STS-B line needs at least 7")
        score, first, second = fields[4], fields[5], fields[6]
    else:
        if len(fields) != SIMPLE_FIELDS:
            raise L2VError(f"{path} line {number}: {len(fields)} fields, expected score<TAB>s1<TAB>s2")
        score, first, second = fields
    if not _is_float(score):
        raise L2VError(f"{path} line {number}: score {score.strip()!r} is not a number")
    first, second = first.strip(), second.strip()
    if not first or not second:
        raise L2VError(f"{path} line {number}: a sentence is empty")
    return StsPair(float(score), first, second)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def spearman(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman's rank correlation × 100 (ties get average ranks)."""
    from scipy.stats import spearmanr

    if len(predicted) < 2:
        raise L2VError("Spearman correlation needs at least 2 pairs")
    if len(set(predicted)) < 2 or len(set(gold)) < 2:
        raise L2VError("Spearman correlation is undefined: all gold scores (or all predictions) are equal")
    return float(spearmanr(predicted, gold).statistic) * 100


def evaluate_sts(
    encoder, pairs: Sequence[StsPair], progress: Callable[[int, int], None] | None = None
) -> StsResult:
    """Embed each distinct sentence once and correlate pair cosines with the gold scores; `progress` gets
    (sentences embedded, sentences) as `Encoder.encode` goes."""
    started = time.perf_counter()
    sentences = list(dict.fromkeys(s for pair in pairs for s in (pair.first, pair.second)))
    vectors = encoder.encode(sentences, progress=progress)
    row = {sentence: i for i, sentence in enumerate(sentences)}
    first = vectors[[row[pair.first] for pair in pairs]]
    second = vectors[[row[pair.second] for pair in pairs]]
    cosines = np.sum(first * second, axis=1)
    value = spearman(cosines.tolist(), [pair.score for pair in pairs])
    return StsResult(value, len(pairs), len(sentences), time.perf_counter() - started)


__all__ = ["StsPair", "StsResult", "evaluate_sts", "load_sts", "spearman"]
