"""The SQLite half of an index (`index.db`): files, chunks, their FTS5 mirror and the index's settings.

Every schema change lives here: `Store.open` creates a fresh database or migrates an older one step by step.
Chunks are written `committed = 0` and flipped to 1 only after their vectors are safely on disk in
`vectors.faiss`, so readers (which only see committed chunks) never see a chunk without a vector, and a killed
writer leaves behind nothing that the next writer's reconcile cannot clean up.
"""

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from ..errors import L2VError, write_failed
from .chunking import Chunk

FORMAT_VERSION = 1
DB_NAME = "index.db"
BUSY_TIMEOUT_SECONDS = 30.0
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
# In the order of `Chunk`'s fields, so that a row is `Chunk(*row)`.
CHUNK_FIELDS = (
    "text",
    "start_char",
    "end_char",
    "start_line",
    "end_line",
    "heading",
    "id",
    "path",
    "ordinal",
)
CHUNK_COLUMNS = ", ".join(f"chunks.{name}" for name in CHUNK_FIELDS)
# FTS5's BM25 (lower is better) with a chunk's heading worth half its text.
BM25_SCORE = "bm25(chunks_fts, 1.0, 0.5)"
_INSERTED = [name for name in CHUNK_FIELDS if name != "id"]
INSERT_PENDING_CHUNK = (
    f"INSERT INTO chunks({', '.join(_INSERTED)}, committed) VALUES ({', '.join('?' * len(_INSERTED))}, 0)"
)


@dataclass
class FileRecord:
    """A row of `files`; `sha256` is None while the file's chunks are being (re)written."""

    path: str
    sha256: str | None
    mtime_ns: int
    size: int
    kind: str


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _create_v1(db: sqlite_utils.Database) -> None:
    db["files"].create(
        {"path": str, "sha256": str, "mtime_ns": int, "size": int, "kind": str, "indexed_at": str}, pk="path"
    )
    # AUTOINCREMENT: a chunk id is never reused, so a stale vector left in FAISS can never alias a new chunk.
    db.execute(
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL REFERENCES files(path),
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            committed INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX chunks_path ON chunks(path)")
    db.execute("CREATE INDEX chunks_committed ON chunks(committed)")
    db.execute(
        "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks', content_rowid='id', "
        f"tokenize='{FTS_TOKENIZER}')"
    )
    db.execute(
        """CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
        END"""
    )
    db.execute(
        """CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
            VALUES ('delete', old.id, old.text, old.heading);
        END"""
    )
    db["info"].create({"key": str, "value": str}, pk="key")


# Step n turns a version n-1 database into version n; a new database runs them all.
_MIGRATIONS = {1: _create_v1}
REQUIRED_TABLES = ("files", "chunks", "chunks_fts", "info")
TEXT_SETTINGS = ("model", "fingerprint", "pooling", "index_type", "created_at")
NUMBER_SETTINGS = ("dim", "max_length", "chunk_tokens", "overlap_tokens")


def read_info(folder: Path) -> dict[str, str]:
    """An index's settings, read without writing anything; {} when its database cannot be read at all."""
    try:
        conn = sqlite3.connect(f"{(folder / DB_NAME).absolute().as_uri()}?mode=ro", uri=True)
        try:
            return dict(conn.execute("SELECT key, value FROM info").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


class Store:
    """Typed access to `index.db`; one connection per process, WAL so readers never wait for the writer."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.db = sqlite_utils.Database(conn)

    @classmethod
    def open(cls, folder: Path, *, create: bool = False) -> "Store":
        path = folder / DB_NAME
        if not path.exists() and not create:
            raise L2VError(f"{folder} is not an index (no {DB_NAME})")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            store = cls(path, conn)
            if create:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            store._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise L2VError(f"cannot open {path}: {exc}") from exc
        return store

    def _migrate(self) -> None:
        version = int(self.get_info("format_version", "0") or 0) if self.db["info"].exists() else 0
        if version > FORMAT_VERSION:
            raise L2VError(
                f"{self.path} was written by a newer l2v-search (format {version}); upgrade to read it"
            )
        if version == FORMAT_VERSION:
            return
        with self.transaction():
            for step in range(version + 1, FORMAT_VERSION + 1):
                _MIGRATIONS[step](self.db)
            self.set_info(format_version=str(FORMAT_VERSION))

    def close(self) -> None:
        self.conn.close()

    def damage(self) -> str | None:
        """What makes this database unusable as an index (a missing table, an unreadable setting); None if
        nothing. Cheap enough to run on every open."""
        try:
            missing = [name for name in REQUIRED_TABLES if not self.db[name].exists()]
            if missing:
                return f"{DB_NAME} has no {', '.join(missing)} table"
            info = self.info()
        except sqlite3.DatabaseError as exc:
            return f"{DB_NAME} cannot be read ({exc})"
        for key in (*TEXT_SETTINGS, *NUMBER_SETTINGS):
            if key not in info:
                return f"{DB_NAME} has no '{key}' setting"
        for key in NUMBER_SETTINGS:
            if not info[key].isdigit():
                return f"{DB_NAME} setting '{key}' is {info[key]!r}, not a number"
        return None

    def integrity_damage(self) -> str | None:
        """`damage` plus what takes a full read to find: SQLite's own check, chunks missing from FTS."""
        problem = self.damage()
        if problem:
            return problem
        try:
            verdict = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                return f"{DB_NAME} is corrupt ({verdict})"
            unsearchable = self.conn.execute(
                "SELECT count(*) FROM chunks WHERE committed = 1 "
                "AND id NOT IN (SELECT id FROM chunks_fts_docsize)"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return f"{DB_NAME} cannot be read ({exc})"
        return f"{unsearchable} chunks have no full-text (BM25) entry" if unsearchable else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so a busy reader cannot deadlock us. A
        write SQLite refuses (a full disk, a busy database) rolls back and raises `L2VError`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise write_failed(self.path, str(exc)) from exc

    # info
    def get_info(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def info(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM info").fetchall())

    def set_info(self, **values: object) -> None:
        self.conn.executemany(
            "INSERT INTO info(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(key, str(value)) for key, value in values.items()],
        )

    # files
    def files(self) -> dict[str, FileRecord]:
        rows = self.conn.execute("SELECT path, sha256, mtime_ns, size, kind FROM files").fetchall()
        return {row[0]: FileRecord(*row) for row in rows}

    def begin_file(self, path: str, kind: str) -> list[int]:
        """Mark `path` as being (re)written and drop its old chunks; returns their ids (for FAISS removal)."""
        removed = self.delete_chunks_of([path])
        self.conn.execute(
            "INSERT INTO files(path, sha256, mtime_ns, size, kind, indexed_at) VALUES (?, NULL, 0, 0, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET sha256 = NULL, kind = excluded.kind",
            (path, kind, now_iso()),
        )
        return removed

    def finish_files(self, records: Iterable[FileRecord]) -> None:
        self.conn.executemany(
            "UPDATE files SET sha256 = ?, mtime_ns = ?, size = ?, kind = ?, indexed_at = ? WHERE path = ?",
            [(r.sha256, r.mtime_ns, r.size, r.kind, now_iso(), r.path) for r in records],
        )

    def touch_file(self, path: str, mtime_ns: int, size: int) -> None:
        """Same content, new stat (e.g. after `touch`): remember the stat so the next run skips hashing."""
        self.conn.execute("UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?", (mtime_ns, size, path))

    def remove_files(self, paths: Sequence[str]) -> list[int]:
        """Delete files and their chunks; returns the chunk ids removed."""
        removed = self.delete_chunks_of(paths)
        self.conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
        return removed

    # chunks
    def delete_chunks_of(self, paths: Sequence[str]) -> list[int]:
        ids: list[int] = []
        for path in paths:
            rows = self.conn.execute("SELECT id FROM chunks WHERE path = ?", (path,)).fetchall()
            ids += [row[0] for row in rows]
            self.conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
        return ids

    def insert_pending_chunks(self, rows: Sequence[Chunk]) -> list[int]:
        """Insert chunks not yet visible to searches; returns their new ids in order."""
        ids = []
        for row in rows:
            cursor = self.conn.execute(INSERT_PENDING_CHUNK, [getattr(row, name) for name in _INSERTED])
            ids.append(int(cursor.lastrowid))
        return ids

    def commit_pending_chunks(self) -> int:
        return self.conn.execute("UPDATE chunks SET committed = 1 WHERE committed = 0").rowcount

    def delete_pending_chunks(self) -> list[int]:
        ids = [row[0] for row in self.conn.execute("SELECT id FROM chunks WHERE committed = 0").fetchall()]
        self.conn.execute("DELETE FROM chunks WHERE committed = 0")
        return ids

    def committed_chunk_ids(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT id FROM chunks WHERE committed = 1")}

    def forget_chunks(self, ids: Iterable[int]) -> None:
        """Drop chunks whose vectors were lost and mark their files for re-indexing."""
        id_list = list(ids)
        for start in range(0, len(id_list), 500):
            part = id_list[start : start + 500]
            marks = ",".join("?" * len(part))
            self.conn.execute(
                "UPDATE files SET sha256 = NULL "
                f"WHERE path IN (SELECT path FROM chunks WHERE id IN ({marks}))",
                part,
            )
            self.conn.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part)

    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """Committed chunks among `ids`; ids of deleted or pending chunks are simply absent."""
        found: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE committed = 1 AND id IN ({marks})",
                part,
            ).fetchall()
            found.update((chunk.id, chunk) for chunk in (Chunk(*row) for row in rows))
        return found

    def counts(self) -> tuple[int, int]:
        """(indexed files, committed chunks)."""
        files = self.conn.execute("SELECT count(*) FROM files WHERE sha256 IS NOT NULL").fetchone()[0]
        chunks = self.conn.execute("SELECT count(*) FROM chunks WHERE committed = 1").fetchone()[0]
        return int(files), int(chunks)

    def unfinished(self) -> tuple[int, int]:
        """(chunks not yet committed, files being (re)written): both 0 unless an update is running or was cut
        short."""
        pending = self.conn.execute("SELECT count(*) FROM chunks WHERE committed = 0").fetchone()[0]
        files = self.conn.execute("SELECT count(*) FROM files WHERE sha256 IS NULL").fetchone()[0]
        return int(pending), int(files)

    def fts_count(self) -> int:
        """Rows in the FTS index: for consistency checks, and the N in a word's IDF (`search.idf`)."""
        return int(self.conn.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0])

    def bm25(
        self, fts_query: str, limit: int, path_filter=None, matching: str | None = None
    ) -> list[tuple[Chunk, float]]:
        """Committed chunks matching an FTS5 query, best first, with a higher-is-better BM25 score;
        `matching`, when given, is an FTS5 query that picks which chunks are ranked (by `fts_query`'s score).

        FTS5 ranks alone and only the best chunks are read: joining `chunks` in the ranking query would read
        every matching chunk's row (2x slower at 10k and 100k chunks, `benchmarks/bm25_latency.py`). Pending
        chunks in the ranking are made up for by asking for more. A path filter needs each match's path, so
        it is ranked with the join."""
        scored, parameters = _bm25_scored(fts_query, matching)
        if path_filter is not None:
            self.conn.create_function("l2v_path_matches", 1, path_filter, deterministic=True)
            ranked = self.conn.execute(
                f"{scored} SELECT scored.id, scored.score FROM scored JOIN chunks ON chunks.id = scored.id "
                "WHERE chunks.committed = 1 AND l2v_path_matches(chunks.path) ORDER BY scored.score LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return self._ranked_chunks(ranked)
        fetch = limit
        while True:
            ranked = self.conn.execute(
                f"{scored} SELECT id, score FROM scored ORDER BY score LIMIT ?", (*parameters, fetch)
            ).fetchall()
            found = self._ranked_chunks(ranked)
            if len(found) >= limit or len(ranked) < fetch:
                return found[:limit]
            fetch *= 4

    def _ranked_chunks(self, ranked: list[tuple[int, float]]) -> list[tuple[Chunk, float]]:
        """Ranked (id, FTS5 score) rows as the committed chunks among them, scores higher-is-better."""
        rows = self.chunks_by_id([i for i, _ in ranked])
        return [(rows[i], -score) for i, score in ranked if i in rows]

    def match_count(self, fts_query: str) -> int:
        """Chunks (pending ones included) matching an FTS5 query: for a word, its IDF and what ranking it
        would cost. Counting reads each match once, cheaper than scoring it (`benchmarks/bm25_latency.py`)."""
        query = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
        return int(self.conn.execute(query, (fts_query,)).fetchone()[0])


def _bm25_scored(fts_query: str, matching: str | None) -> tuple[str, tuple[str, ...]]:
    """A `WITH scored(id, score)` clause (lower score is better) and its parameters.

    With `matching`, the query `(matching) AND (fts_query)` finds just `matching`'s chunks and scores every
    phrase of both halves, so `matching`'s words count twice; taking away `matching`'s own score leaves
    `fts_query`'s BM25 exactly (FTS5 takes each word's IDF over the whole table). Both halves are
    materialized: joined unmaterialized, FTS5 would be queried, and its IDFs recomputed, once per chunk."""
    ranked = f"SELECT rowid AS id, {BM25_SCORE} AS score FROM chunks_fts WHERE chunks_fts MATCH ?"
    if matching is None:
        return f"WITH scored AS ({ranked})", (fts_query,)
    return (
        f"WITH both_halves AS MATERIALIZED ({ranked}), matching AS MATERIALIZED ({ranked}), "
        "scored AS (SELECT both_halves.id, both_halves.score - matching.score AS score "
        "FROM both_halves JOIN matching ON both_halves.id = matching.id)",
        (f"({matching}) AND ({fts_query})", matching),
    )
