"""The distillation teacher on the evaluation sets: the reference a distilled student chases, and the check
that the teacher is the real model (all-MiniLM-L6-v2 must give STS-B test 82.0 ± 0.3, as published).

STS: `evaluate_sts`, as `l2v-search eval sts` scores a model. Retrieval: the teacher embeds each whole
document ("title\\n\\ntext", cut at its own 256 word pieces, as BEIR evaluates sentence-transformers models)
and each query (no instruction); documents are ranked by exact cosine and scored with the metrics of
`l2v-search eval retrieval` (which ranks a document by its best chunk instead). A corpus is embedded once for
all its splits.

    python benchmarks/teacher_eval.py --sts ../shared/data/stsbenchmark/sts-{dev,test}.csv \\
        --beir ../shared/data/squad_dev:dev ../shared/data/scifact:train ../shared/data/scifact:test
"""

import argparse
import time
from pathlib import Path

import numpy as np

from llm2vec_search.evaluation import load_beir, mean_metrics
from llm2vec_search.evaluation.sts import evaluate_sts, load_sts
from llm2vec_search.training.teacher import Teacher, default_teacher_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--teacher", type=Path, help="a sentence-transformers folder (default: all-MiniLM-L6-v2)"
    )
    parser.add_argument("--sts", type=Path, nargs="*", default=[], help="STS files, as `l2v-search eval sts`")
    parser.add_argument("--beir", nargs="*", default=[], help="BEIR folders as FOLDER:SPLIT")
    args = parser.parse_args()
    teacher = Teacher(args.teacher or default_teacher_dir())
    print(f"teacher {teacher.directory} ({teacher.pooling} pooling, {teacher.max_length} tokens)")
    for path in args.sts:
        result = evaluate_sts(teacher, load_sts(path))
        print(f"{path.name}: Spearman {result.spearman:.2f} ({result.pairs} pairs, {result.seconds:.0f} s)")
    corpora: dict[str, tuple[list[str], np.ndarray]] = {}
    for spec in args.beir:
        folder, split = spec.rsplit(":", 1)
        dataset = load_beir(Path(folder), split)
        if dataset.corpus_hash not in corpora:
            started = time.perf_counter()
            doc_ids = list(dataset.corpus)
            vectors = teacher.encode([dataset.corpus[i] for i in doc_ids])
            corpora[dataset.corpus_hash] = (doc_ids, vectors)
            print(
                f"{dataset.name}: {len(doc_ids)} documents embedded in {time.perf_counter() - started:.0f} s"
            )
        doc_ids, doc_vectors = corpora[dataset.corpus_hash]
        query_ids = list(dataset.queries)
        similarities = teacher.encode([dataset.queries[i] for i in query_ids]) @ doc_vectors.T
        top = np.argsort(-similarities, axis=1)[:, :100]
        rankings = {q: [doc_ids[j] for j in row] for q, row in zip(query_ids, top, strict=True)}
        metrics = mean_metrics(dataset.qrels, rankings)
        print(
            f"{dataset.name} {split} ({len(query_ids)} queries): nDCG@10 {metrics['ndcg@10']:.4f}", flush=True
        )


if __name__ == "__main__":
    main()
