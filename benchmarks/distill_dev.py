"""Any model on the dev sample that `train distill --dev-data` scores its checkpoints on (300 `squad_dev`
paragraphs with every question about them, exact dense search; STS-B dev), so a distillation run's curve can
be set beside the models it started from. Dev only: no test split is read.

    python benchmarks/distill_dev.py default RUN_DIR --data ../shared/data --max-length 128
"""

import argparse
from pathlib import Path

from llm2vec_search.encoder import Encoder
from llm2vec_search.training.distill_dev import DevTexts


def dev_scores(encoder: Encoder, texts: DevTexts) -> dict[str, float]:
    return texts.score(
        lambda: encoder.encode(texts.docs),
        lambda: encoder.encode_queries(texts.queries),
        lambda: encoder.encode(texts.sentences),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="model specs, as --model takes them")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--max-length", type=int, default=128, help="as the distillation run's --max-length")
    args = parser.parse_args()
    texts = DevTexts.load(args.data)
    print("| model | squad_dev sample nDCG@10 | STS-B dev Spearman |\n|---|---|---|")
    for spec in args.models:
        scores = dev_scores(Encoder.from_pretrained(spec, max_length=args.max_length), texts)
        print(f"| {spec} | {scores['squad_dev_sample_ndcg@10']:.4f} | {scores['stsb_dev']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
