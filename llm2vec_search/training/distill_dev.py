"""A dev curve for distillation that costs only the top layers: `squad_dev` (a seeded sample of paragraphs
and every question about them, exact dense search) and STS-B dev, embedded from the frozen layers' cached
output, at every checkpoint. The teacher is measured on the same texts, as the reference it chases.

Dev only: SciFact and STS-B test are never read here.
"""

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..encoder.encoder import Encoder
from ..evaluation.beir import load_beir
from ..evaluation.metrics import mean_metrics
from ..evaluation.sts import load_sts, spearman
from .features import Features, TopLayers, cached_features, texts_key

DEV_PARAGRAPHS = 300


@dataclass
class DevTexts:
    doc_ids: list[str]
    docs: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]
    sentences: list[str]
    sts_pairs: list[tuple[int, int, float]]  # indices into `sentences`, gold score

    @classmethod
    def load(cls, data_root: Path, paragraphs: int = DEV_PARAGRAPHS, seed: int = 0) -> "DevTexts":
        squad = load_beir(data_root / "squad_dev", split="dev")
        doc_ids = sorted(random.Random(seed).sample(sorted(squad.corpus), min(paragraphs, len(squad.corpus))))
        kept = set(doc_ids)
        qrels = {q: judged for q, judged in squad.qrels.items() if set(judged) & kept}
        query_ids = [q for q in squad.queries if q in qrels]
        pairs = load_sts(data_root / "stsbenchmark" / "sts-dev.csv")
        sentences = list(dict.fromkeys(s for pair in pairs for s in (pair.first, pair.second)))
        row = {sentence: i for i, sentence in enumerate(sentences)}
        return cls(
            doc_ids,
            [squad.corpus[d] for d in doc_ids],
            query_ids,
            [squad.queries[q] for q in query_ids],
            {q: {d: s for d, s in qrels[q].items() if d in kept} for q in query_ids},
            sentences,
            [(row[p.first], row[p.second], p.score) for p in pairs],
        )

    def score(self, embed_docs, embed_queries, embed_sentences) -> dict[str, float]:
        """squad_dev sample nDCG@10 and STS-B dev Spearman from three embedding functions."""
        docs, queries, sentences = embed_docs(), embed_queries(), embed_sentences()
        order = np.argsort(-(queries @ docs.T), axis=1)[:, :100]
        rankings = {q: [self.doc_ids[j] for j in order[i]] for i, q in enumerate(self.query_ids)}
        first = sentences[[a for a, _, _ in self.sts_pairs]]
        second = sentences[[b for _, b, _ in self.sts_pairs]]
        return {
            "squad_dev_sample_ndcg@10": round(mean_metrics(self.qrels, rankings)["ndcg@10"], 4),
            "stsb_dev": round(
                spearman(np.sum(first * second, 1).tolist(), [g for _, _, g in self.sts_pairs]), 2
            ),
        }


class DevProbe:
    """The dev texts' frozen features for one student; `evaluate(model)` scores the current top layers."""

    def __init__(self, texts: DevTexts, encoder: Encoder, bottom, device: torch.device) -> None:
        self.texts = texts
        self.device = device

        def features(items: list[str], instruction: str | None) -> Features:
            tokenized = encoder.tokenize(items, instruction)
            key = texts_key(
                "dev", encoder.fingerprint, len(bottom.layers), encoder.max_length, instruction, items
            )
            return cached_features(bottom, tokenized, encoder.tokenizer.pad_token_id, device, key)

        self.docs = features(texts.docs, None)
        self.queries = features(texts.queries, encoder.query_instruction)
        self.sentences = features(texts.sentences, None)

    @torch.no_grad()
    def evaluate(self, model: TopLayers) -> dict[str, float]:
        was_training = model.training
        model.eval()

        def embed(features: Features) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                count = len(features.states)
                order = sorted(range(count), key=lambda i: len(features.states[i]))
                out = np.zeros((count, model.head.out_features), dtype=np.float32)
                for start in range(0, count, 32):
                    batch = order[start : start + 32]
                    vectors = torch.nn.functional.normalize(model(features, batch, self.device), dim=-1)
                    out[batch] = vectors.cpu().numpy()
                return out

            return run

        result = self.texts.score(embed(self.docs), embed(self.queries), embed(self.sentences))
        model.train(was_training)
        return result


def teacher_scores(teacher, texts: DevTexts) -> dict[str, float]:
    return texts.score(
        lambda: teacher.encode(texts.docs),
        lambda: teacher.encode(texts.queries),
        lambda: teacher.encode(texts.sentences),
    )


def append_row(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
