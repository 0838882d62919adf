"""Read a BEIR dataset folder: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`.

Every problem is reported as one `L2VError` naming the file and line, so a broken download is easy to find.
"""

import hashlib
import json
import logging
from collections.abc import Iterator, Set
from dataclasses import dataclass
from pathlib import Path

from ..errors import L2VError
from ..indexing.extract import Document

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


@dataclass
class BeirDataset:
    """A BEIR split: the corpus, the split's judged queries, and the judgements (query → doc → grade)."""

    root: Path
    split: str
    corpus: dict[str, str]  # doc id → "title\n\ntext" (just the text when there is no title)
    queries: dict[str, str]  # only the queries the split judges, in file order
    qrels: dict[str, dict[str, int]]
    corpus_hash: str  # sha256 of corpus.jsonl: the eval index is cached under it

    @property
    def name(self) -> str:
        return self.root.name

    def documents(self) -> Iterator[Document]:
        """The corpus as `Document`s whose path is the doc id, for `Index.update_documents`."""
        for doc_id, text in self.corpus.items():
            yield Document(path=doc_id, text=text, kind="text")


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    """Load and cross-check a BEIR folder; documents with neither title nor text are left out of the corpus
    (their judgements stay: such a document is judged but can never be retrieved)."""
    root = Path(root)
    if not root.is_dir():
        raise L2VError(f"{root}: not a folder (expected a BEIR dataset folder with {CORPUS_FILE})")
    qrels_path = root / QRELS_DIR / f"{split}.tsv"
    for needed in (root / CORPUS_FILE, root / QUERIES_FILE):
        if not needed.is_file():
            raise L2VError(f"{root}: not a BEIR folder, {needed.name} is missing")
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / QRELS_DIR).glob("*.tsv"))
        hint = f"; splits here: {', '.join(available)}" if available else ""
        raise L2VError(f"{qrels_path}: no qrels for split {split!r}{hint}")

    corpus, empty = {}, set()
    for doc_id, record, _ in _jsonl_records(root / CORPUS_FILE):
        text = "\n\n".join(part.strip() for part in (record.get("title"), record.get("text")) if part)
        if text.strip():
            corpus[doc_id] = text
        else:
            empty.add(doc_id)
    all_queries = {doc_id: record.get("text") for doc_id, record, _ in _jsonl_records(root / QUERIES_FILE)}
    qrels = _read_qrels(qrels_path, corpus.keys() | empty, all_queries)
    judged_empty = empty & {doc_id for judged in qrels.values() for doc_id in judged}
    if judged_empty:  # real collections have them; they count as judged documents no search can find
        log.warning(
            "%d judged documents in %s have neither title nor text: kept as judged, never retrieved",
            len(judged_empty),
            CORPUS_FILE,
        )
    for query_id in qrels:
        if not isinstance(all_queries[query_id], str) or not all_queries[query_id].strip():
            raise L2VError(f"{root / QUERIES_FILE}: query {query_id!r} has no text")
    queries = {query_id: all_queries[query_id] for query_id in all_queries if query_id in qrels}
    return BeirDataset(root, split, corpus, queries, qrels, _sha256(root / CORPUS_FILE))


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict, int]]:
    """(id, record, line number) for each non-blank line; duplicate ids are an error."""
    seen: set[str] = set()
    for number, line in _numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise L2VError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or "_id" not in record:
            raise L2VError(f'{path} line {number}: expected a JSON object with an "_id"')
        doc_id = str(record["_id"])
        for field in ("title", "text"):
            if record.get(field) is not None and not isinstance(record[field], str):
                raise L2VError(f'{path} line {number}: "{field}" is not a string')
        if doc_id in seen:
            raise L2VError(f"{path} line {number}: duplicate _id {doc_id!r}")
        seen.add(doc_id)
        yield doc_id, record, number


def _read_qrels(path: Path, corpus: Set[str], queries: dict[str, object]) -> dict[str, dict[str, int]]:
    """`query-id<TAB>corpus-id<TAB>score` lines after a header; every id must exist."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _numbered_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if number == 1 and not _is_int(fields[-1]):
            continue  # the header, e.g. "query-id  corpus-id  score"
        if len(fields) != 3 or not _is_int(fields[2]):
            raise L2VError(f"{path} line {number}: expected query-id<TAB>corpus-id<TAB>integer score")
        query_id, doc_id, score = fields[0], fields[1], int(fields[2])
        if query_id not in queries:
            raise L2VError(f"{path} line {number}: query id {query_id!r} is not in {QUERIES_FILE}")
        if doc_id not in corpus:
            raise L2VError(f"{path} line {number}: corpus id {doc_id!r} is not in {CORPUS_FILE}")
        qrels.setdefault(query_id, {})[doc_id] = score
    if not any(score > 0 for judged in qrels.values() for score in judged.values()):
        raise L2VError(f"{path}: the split has no relevant judgements, so there is nothing to evaluate")
    return qrels


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line, decoded as UTF-8 with the line named on failure."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise L2VError(f"{path}: cannot read ({exc.strerror})") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise L2VError(f"{path} line {number}: not UTF-8 text") from exc
            if line.strip():
                yield number, line


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["BeirDataset", "load_beir"]
