"""SciFact *train* queries → `train supervised` pairs, each with a BM25 hard negative.

    python scripts/make_scifact_pairs.py ../shared/data/scifact PAIRS.jsonl

One line per (query, relevant document): {"query", "positive", "negative"}, the negative drawn from the three
best BM25 documents that are not judged relevant to the query (a hard negative: lexically close, wrong). Only
`qrels/train.tsv` is read; test queries and judgements never are. BM25 runs over the corpus chunked as
`l2v-search eval retrieval --max-length 256` chunks it, so no model forward pass is needed. The output is the
same on every run (fixed seed, sorted judgements).
"""

import argparse
import json
import random
from pathlib import Path

from llm2vec_search import Encoder
from llm2vec_search.evaluation.beir import load_beir
from llm2vec_search.evaluation.retrieval import (
    LexicalOnlyEncoder,
    build_eval_index,
    eval_chunking,
    rank_documents,
)
from llm2vec_search.indexing.options import SearchOptions

HARD_NEGATIVE_POOL = 3  # the negative is drawn from this many top non-relevant BM25 documents


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scifact", type=Path, help="the BEIR SciFact folder")
    parser.add_argument("out", type=Path, help="JSON lines file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_beir(args.scifact, split="train")
    encoder = LexicalOnlyEncoder(Encoder.from_pretrained("gemma3-270m", max_length=256))
    index, _ = build_eval_index(data, encoder, *eval_chunking(encoder.max_length))
    ranked = rank_documents(index, data.queries, SearchOptions(mode="bm25"), depth=20)
    rng = random.Random(args.seed)
    rows = []
    for query_id, query in data.queries.items():
        relevant = sorted(doc for doc, grade in data.qrels[query_id].items() if grade > 0)
        negatives = [doc for doc in ranked.get(query_id, []) if doc not in relevant][:HARD_NEGATIVE_POOL]
        for doc in relevant:
            negative = data.corpus[rng.choice(negatives)] if negatives else None
            rows.append({"query": query, "positive": data.corpus[doc], "negative": negative})
    rng.shuffle(rows)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} pairs from {len(data.queries)} train queries → {args.out}")


if __name__ == "__main__":
    main()
