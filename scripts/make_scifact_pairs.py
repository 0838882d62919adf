"""SciFact *train* queries → `train supervised` pairs, each with a BM25 hard negative.

    python scripts/make_scifact_pairs.py ../shared/data/scifact PAIRS.jsonl
    python scripts/make_scifact_pairs.py ../shared/data/scifact PAIRS.jsonl --hold-out 0.2 --dev-dir D/scifact

One line per (query, relevant document): {"query", "positive", "negative"}, the negative drawn from the three
best BM25 documents that are not judged relevant to the query (a hard negative: lexically close, wrong). Only
`qrels/train.tsv` is read; test queries and judgements never are. BM25 runs over the corpus chunked as
`l2v-search eval retrieval --max-length 256` chunks it, so no model forward pass is needed. The output is the
same on every run (fixed seed, sorted judgements).

`--hold-out F` keeps a fraction F of the train queries (drawn with the seed) out of the pairs and writes
them as a BEIR folder `--dev-dir` with split `dev` (its corpus and queries files link to the original's): a
SciFact dev set that a model trained on the pairs never saw, where the train queries themselves reward fitting
them. Name the folder `scifact` so that `l2v-search eval` reuses the corpus index cached for SciFact (the
cache is keyed by the folder's name and the corpus's hash): `l2v-search eval retrieval D/scifact --split dev`.
"""

import argparse
import json
import random
from pathlib import Path

from llm2vec_search import Encoder
from llm2vec_search.evaluation.beir import CORPUS_FILE, QRELS_DIR, QUERIES_FILE, load_beir
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
    parser.add_argument("--hold-out", type=float, default=0.0, help="fraction of train queries kept out")
    parser.add_argument("--dev-dir", type=Path, help="where to write the held-out queries as a BEIR folder")
    parser.add_argument("--model", default="gemma3-270m", help="whose tokenizer chunks the corpus")
    args = parser.parse_args()
    if args.hold_out and not args.dev_dir:
        parser.error("--hold-out needs --dev-dir")
    links = [args.dev_dir / name for name in (CORPUS_FILE, QUERIES_FILE)] if args.hold_out else []
    if any(link.exists() and not link.is_symlink() for link in links):  # a real BEIR folder: never replace it
        parser.error(f"{args.dev_dir} holds a BEIR folder's own files; give a new folder as --dev-dir")
    data = load_beir(args.scifact, split="train")
    count = round(args.hold_out * len(data.queries))
    held_out = set(random.Random(args.seed).sample(sorted(data.queries), count))
    if held_out:
        write_dev_split(args.scifact, args.dev_dir, held_out)
    encoder = LexicalOnlyEncoder(Encoder.from_pretrained(args.model, max_length=256))
    index, _ = build_eval_index(data, encoder, *eval_chunking(encoder.max_length))
    ranked = rank_documents(index, data.queries, SearchOptions(mode="bm25"), depth=20)
    rng = random.Random(args.seed)
    rows = []
    for query_id, query in data.queries.items():
        if query_id in held_out:
            continue
        relevant = sorted(doc for doc, grade in data.qrels[query_id].items() if grade > 0)
        negatives = [doc for doc in ranked.get(query_id, []) if doc not in relevant][:HARD_NEGATIVE_POOL]
        for doc in relevant:
            negative = data.corpus[rng.choice(negatives)] if negatives else None
            rows.append({"query": query, "positive": data.corpus[doc], "negative": negative})
    rng.shuffle(rows)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    kept = len(data.queries) - len(held_out)
    print(f"{len(rows)} pairs from {kept} train queries → {args.out}; {len(held_out)} held out")


def write_dev_split(scifact: Path, dev_dir: Path, held_out: set[str]) -> None:
    """`dev_dir` as a BEIR folder whose `dev` split is the held-out train queries' judgements."""
    (dev_dir / QRELS_DIR).mkdir(parents=True, exist_ok=True)
    for name in (CORPUS_FILE, QUERIES_FILE):
        link = dev_dir / name
        link.unlink(missing_ok=True)  # a link an earlier run made (`main` refuses real files)
        link.symlink_to((scifact / name).resolve())
    header, *lines = (scifact / QRELS_DIR / "train.tsv").read_text().splitlines()
    kept = [line for line in lines if line.split("\t", 1)[0] in held_out]
    (dev_dir / QRELS_DIR / "dev.tsv").write_text("\n".join([header, *kept]) + "\n")


if __name__ == "__main__":
    main()
