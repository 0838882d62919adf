"""BM25 parity: l2v-search's BM25 (SQLite FTS5, through the real index) against `bm25s`'s Lucene variant.

The same queries over the same documents with the same judgements, nDCG@10, on every retrieval set in
`../shared/data`: SciFact test and train, `squad_dev`, and `squad_dev long`, a long-question variant built
from it: every `squad_dev` question about one paragraph joined into one query and judged against that
paragraph (paragraphs with two questions or more; only the set's own questions and judgements are used).
- ours: `l2v-search eval retrieval --mode bm25` as a user runs it: the BM25-only eval index of the default
  model's chunks (cached, no embedding), documents ranked by their best chunk;
- bm25s: method "lucene", k1 1.5, b 0.75, bm25s's English stopwords (the list our queries drop), PyStemmer's
  English (Snowball) stemmer, whole documents (title and text, as ours indexes them).

With `--causes`, one row per difference between the two, each moved on its own (measured, not assumed):
- `ours, whole documents`: one chunk per document, through the same `Store` and `bm25_ranking`;
- `ours, repeated words`: each query word scored as often as the query says it (as Lucene sums), not once;
- `ours, Lucene's formula`: Lucene's IDF and k1 1.5 over our chunks and FTS5's own tokens and statistics
  (`fts5vocab`), every matching chunk scored: what re-ranking all of FTS5's matches by that formula gives;
- `bm25s, k1 1.2`: FTS5's k1 in bm25s;
- `bm25s, FTS5's IDF`: log((N − n + 0.5)/(n + 0.5)), floored at 0 (bm25s "robertson"; FTS5 floors at 1e-6);
- `bm25s, FTS5's words`: Porter's stemmer (FTS5's `porter`) and words of one character kept;
- `bm25s, distinct words`: each query word once, as ours scores it.

    python benchmarks/bm25_parity.py            # the four sets, ours vs bm25s
    python benchmarks/bm25_parity.py --causes   # plus one row per difference
    python benchmarks/bm25_parity.py --sets "squad_train long"   # 45-word questions, 16k paragraphs
    python benchmarks/bm25_parity.py --data DIR --model MODEL --sets NAME ...   # other data or chunks
"""

import argparse
import dataclasses
import gzip
import hashlib
import json
import math
import random
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import bm25s
import Stemmer
from rich.console import Console
from rich.table import Table

from llm2vec_search.encoder import Encoder
from llm2vec_search.evaluation import load_beir, mean_metrics
from llm2vec_search.evaluation.beir import BeirDataset
from llm2vec_search.evaluation.retrieval import (
    DOC_DEPTH,
    LexicalOnlyEncoder,
    build_eval_index,
    eval_chunking,
    rank_documents,
)
from llm2vec_search.indexing.chunking import Chunk
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.search import bm25_ranking, fts_query, query_words
from llm2vec_search.indexing.store import FTS_TOKENIZER, FileRecord, Store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# bm25s's own default token pattern (scikit-learn's: words of two characters or more).
BM25S_WORDS = r"(?u)\b\w\w+\b"
FTS5_WORDS = r"(?u)\b\w+\b"
# Each FTS5 column's weight in our score (`BM25_SCORE`: the heading counts half).
COLUMN_WEIGHTS = {"text": 1.0, "heading": 0.5}
SETS = ["scifact test", "scifact train", "squad_dev", "squad_dev long"]
Rankings = dict[str, list[str]]  # query id → doc ids, best first
console = Console(width=120)
progress = Console(stderr=True)  # each row as it is measured; the table goes to stdout


def long_questions(dataset: BeirDataset) -> BeirDataset:
    """Each paragraph's questions joined into one query (in file order), judged against that paragraph;
    paragraphs asked about only once are left out, so every query is a joining."""
    asked: dict[str, list[str]] = {}
    for query_id, text in dataset.queries.items():
        for doc_id, grade in dataset.qrels[query_id].items():
            if grade > 0:
                asked.setdefault(doc_id, []).append(text.strip())
    joined = {doc_id: texts for doc_id, texts in asked.items() if len(texts) > 1}
    return dataclasses.replace(
        dataset,
        split=f"{dataset.split} long",
        queries={f"long-{doc_id}": " ".join(texts) for doc_id, texts in joined.items()},
        qrels={f"long-{doc_id}": {doc_id: 1} for doc_id in joined},
    )


def sampled(dataset: BeirDataset, count: int, seed: int = 0) -> BeirDataset:
    """`count` of the set's queries, drawn at random (seeded), all its documents."""
    query_ids = sorted(random.Random(seed).sample(sorted(dataset.queries), min(count, len(dataset.queries))))
    return dataclasses.replace(
        dataset,
        queries={query_id: dataset.queries[query_id] for query_id in query_ids},
        qrels={query_id: dataset.qrels[query_id] for query_id in query_ids},
    )


def squad_train_pairs(path: Path) -> BeirDataset:
    """`train/squad_train_pairs.jsonl.gz` as a retrieval set: every paragraph in it (positive or negative)
    a document, each question a query judged against its positive paragraph."""
    ids: dict[str, str] = {}  # paragraph text → its doc id, in order of first appearance
    queries, qrels = {}, {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            pair = json.loads(line)
            for text in filter(None, (pair["positive"], pair.get("negative"))):
                ids.setdefault(text, f"p{len(ids)}")
            queries[f"q{number}"] = pair["query"]
            qrels[f"q{number}"] = {ids[pair["positive"]]: 1}
    corpus = {doc_id: text for text, doc_id in ids.items()}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # keys the cached eval index, as a corpus file's
    return BeirDataset(path.parent / "squad_train_pairs", "train", corpus, queries, qrels, digest)


def load_sets(data: Path, names: list[str]) -> dict[str, BeirDataset]:
    """The named sets (`SETS`, and `squad_train long`: 1,000 of `long_questions` over SQuAD train, longer
    questions over a larger corpus than `squad_dev long`; train data, not in the default run)."""
    loaders: dict[str, Callable[[], BeirDataset]] = {
        "scifact test": lambda: load_beir(data / "scifact", "test"),
        "scifact train": lambda: load_beir(data / "scifact", "train"),
        "squad_dev": lambda: load_beir(data / "squad_dev", "dev"),
        "squad_dev long": lambda: long_questions(load_beir(data / "squad_dev", "dev")),
        "squad_train long": lambda: sampled(
            long_questions(squad_train_pairs(data / "train" / "squad_train_pairs.jsonl.gz")), 1000
        ),
    }
    unknown = [name for name in names if name not in loaders]
    if unknown:
        raise SystemExit(f"error: unknown set {unknown[0]!r}; choose from {', '.join(loaders)}")
    return {name: loaders[name]() for name in names}


def ours(dataset: BeirDataset, encoder: LexicalOnlyEncoder, repeated: bool = False) -> Rankings:
    """Our BM25 through the cached eval index; `repeated` scores each query word once per occurrence."""
    index, _ = build_eval_index(dataset, encoder, *eval_chunking(encoder.max_length))
    with index:
        if not repeated:
            return rank_documents(index, dataset.queries, SearchOptions(mode="bm25"))
        return {
            query_id: best_documents(
                index.store.bm25(fts_query(query_words(text, distinct=False)), DOC_DEPTH * 4)
            )
            for query_id, text in dataset.queries.items()
        }


def best_documents(hits: list[tuple[Chunk, float]]) -> list[str]:
    return list(dict.fromkeys(chunk.path for chunk, _ in hits))[:DOC_DEPTH]


def ours_lucene(
    dataset: BeirDataset, encoder: LexicalOnlyEncoder, k1: float = 1.5, b: float = 0.75
) -> Rankings:
    """Lucene's BM25 (IDF log(1 + (N − n + 0.5)/(n + 0.5))) over the eval index's chunks, from FTS5's own
    tokens, document frequencies and chunk lengths; each query word once, as ours."""
    index, _ = build_eval_index(dataset, encoder, *eval_chunking(encoder.max_length))
    with index:
        conn = index.store.conn
        conn.execute("CREATE VIRTUAL TABLE temp.chunk_terms USING fts5vocab(main, chunks_fts, instance)")
        conn.execute(f"CREATE VIRTUAL TABLE temp.query USING fts5(text, tokenize='{FTS_TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE temp.query_terms USING fts5vocab(temp, query, row)")
        lengths = {i: sum(varints(size)) for i, size in conn.execute("SELECT id, sz FROM chunks_fts_docsize")}
        average = sum(lengths.values()) / len(lengths)
        paths = dict(conn.execute("SELECT id, path FROM chunks WHERE committed = 1").fetchall())
        rankings = {}
        for query_id, text in dataset.queries.items():
            conn.execute("DELETE FROM temp.query")
            conn.execute("INSERT INTO temp.query(text) VALUES (?)", (" ".join(query_words(text)),))
            scores: dict[int, float] = defaultdict(float)
            for (term,) in conn.execute("SELECT term FROM temp.query_terms").fetchall():
                frequency: dict[int, float] = defaultdict(float)
                for chunk, column, count in conn.execute(
                    "SELECT doc, col, count(*) FROM temp.chunk_terms WHERE term = ? GROUP BY doc, col",
                    (term,),
                ):
                    frequency[chunk] += COLUMN_WEIGHTS[column] * count
                idf = math.log(1 + (len(lengths) - len(frequency) + 0.5) / (len(frequency) + 0.5))
                for chunk, tf in frequency.items():
                    norm = k1 * (1 - b + b * lengths[chunk] / average)
                    scores[chunk] += idf * tf * (k1 + 1) / (tf + norm)
            ranked = sorted(
                (chunk for chunk in scores if chunk in paths), key=scores.__getitem__, reverse=True
            )
            rankings[query_id] = list(dict.fromkeys(paths[chunk] for chunk in ranked))[:DOC_DEPTH]
    return rankings


def varints(blob: bytes) -> Iterator[int]:
    """SQLite's variable-length integers, as FTS5 stores each chunk's per-column token counts."""
    value = 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            yield value
            value = 0


def ours_whole_documents(dataset: BeirDataset) -> Rankings:
    """Our BM25 (`bm25_ranking`) over a store holding each document as one chunk."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder), create=True)
        with store.transaction():
            for doc_id, text in dataset.corpus.items():
                store.begin_file(doc_id, "text")
                store.insert_pending_chunks([Chunk(text, 0, len(text), 1, 1, "", path=doc_id, ordinal=0)])
                store.finish_files([FileRecord(doc_id, "0" * 64, 0, 0, "text")])
            store.commit_pending_chunks()
        rankings = {
            query_id: best_documents(bm25_ranking(store, text, DOC_DEPTH).hits)
            for query_id, text in dataset.queries.items()
        }
        store.close()
    return rankings


def lucene(
    dataset: BeirDataset,
    k1: float = 1.5,
    method: str = "lucene",
    stemmer: str = "english",
    words: str = BM25S_WORDS,
    distinct: bool = False,
) -> Rankings:
    """bm25s over whole documents; the defaults are the reference, each argument moves one difference."""
    doc_ids = list(dataset.corpus)
    stem = Stemmer.Stemmer(stemmer)

    def tokens(texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(
            texts, token_pattern=words, stopwords="en", stemmer=stem, return_ids=False, show_progress=False
        )

    retriever = bm25s.BM25(method=method, k1=k1, b=0.75)
    retriever.index(tokens([dataset.corpus[doc_id] for doc_id in doc_ids]), show_progress=False)
    query_ids = list(dataset.queries)
    query_tokens = tokens([dataset.queries[query_id] for query_id in query_ids])
    if distinct:
        query_tokens = [list(dict.fromkeys(words)) for words in query_tokens]
    found, scores = retriever.retrieve(
        query_tokens, k=min(DOC_DEPTH, len(doc_ids)), show_progress=False, n_threads=1
    )
    return {
        query_id: [doc_ids[i] for i, score in zip(row, row_scores, strict=True) if score > 0]
        for query_id, row, row_scores in zip(query_ids, found, scores, strict=True)
    }


def median_words(texts: list[str]) -> float:
    return statistics.median(len(query_words(text, frozenset(), distinct=False)) for text in texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--model", default="default", help="whose tokenizer chunks the documents (ours)")
    parser.add_argument("--sets", nargs="+", default=SETS, help="also: squad_train long")
    parser.add_argument("--causes", action="store_true", help="also one row per difference, moved alone")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data} is missing; this benchmark needs the shared data")
    encoder = LexicalOnlyEncoder(Encoder.from_pretrained(args.model))
    table = Table(title="BM25 nDCG@10: l2v-search (SQLite FTS5) vs bm25s (Lucene, k1 1.5, b 0.75)")
    for column in ("set", "queries (median words)", "documents", "ranker", "nDCG@10", "vs bm25s"):
        table.add_column(column, justify="right")
    for name, dataset in load_sets(args.data, args.sets).items():
        rows: dict[str, Callable[[], Rankings]] = {
            "bm25s (reference)": lambda d=dataset: lucene(d),
            "ours": lambda d=dataset: ours(d, encoder),
        }
        if args.causes:
            rows |= {
                "ours, whole documents": lambda d=dataset: ours_whole_documents(d),
                "ours, repeated words": lambda d=dataset: ours(d, encoder, repeated=True),
                "ours, Lucene's formula": lambda d=dataset: ours_lucene(d, encoder),
                "bm25s, k1 1.2": lambda d=dataset: lucene(d, k1=1.2),
                "bm25s, FTS5's IDF": lambda d=dataset: lucene(d, method="robertson"),
                "bm25s, FTS5's words": lambda d=dataset: lucene(d, stemmer="porter", words=FTS5_WORDS),
                "bm25s, distinct words": lambda d=dataset: lucene(d, distinct=True),
            }
        shape = f"{len(dataset.queries):,} ({median_words(list(dataset.queries.values())):g})"
        reference = None
        for ranker, rank in rows.items():
            ndcg = mean_metrics(dataset.qrels, rank())["ndcg@10"]
            reference = ndcg if reference is None else reference
            table.add_row(
                name, shape, f"{len(dataset.corpus):,}", ranker, f"{ndcg:.4f}", f"{ndcg - reference:+.4f}"
            )
            progress.print(f"{name:>15}  {ranker:<22} {ndcg:.4f}", highlight=False)
        table.add_section()
    console.print(table)


if __name__ == "__main__":
    main()
