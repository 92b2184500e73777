"""Where annotations live: one SQLite file (stdlib sqlite3, WAL mode), a row per answer.

Each answer is written in its own transaction the moment it is given, so killing the server
loses nothing already answered. An annotator's answer to a task is keyed by (task, annotator):
several annotators never overwrite each other, and answering a task again (a second tab)
replaces only that annotator's own row. Every call opens its own connection, so the server's
worker threads never share one; writes are serialised by a lock in this process and by
SQLite's `BEGIN IMMEDIATE` across processes."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Container, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tagshift.errors import TagshiftError

ANSWERS = ("accept", "reject", "skip")
SCHEMA_VERSION = 1  # PRAGMA user_version of a store this module made

_SCHEMA = """
CREATE TABLE answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- order answers were given in (undo takes the highest)
    task_id TEXT NOT NULL,
    annotator TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('accept', 'reject', 'skip')),
    spans TEXT NOT NULL,      -- JSON: [{start, end (characters), label, token_start, token_end (inclusive)}]
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,     -- JSON: [{text, start, end}]
    source TEXT NOT NULL,     -- where the sentence came from, e.g. news.txt:3 #1
    answered_at TEXT NOT NULL,  -- ISO 8601, UTC
    UNIQUE (task_id, annotator)
);
CREATE INDEX answers_by_annotator ON answers (annotator, seq);
"""


class StoreError(TagshiftError):
    """An annotation database that cannot be used as it is."""


@dataclass(frozen=True)
class Answer:
    """One annotator's answer to one task, as stored."""

    seq: int
    task_id: str
    annotator: str
    answer: str
    spans: list[dict[str, Any]]
    text: str
    tokens: list[dict[str, Any]]
    source: str
    answered_at: str


class AnnotationStore:
    """The answers in the SQLite file at `path`. With `create`, a missing file is made (its
    directory must exist: a typo should not create one); without, it must exist (export)."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self._write_lock = threading.Lock()
        _check_path(self.path, create)
        try:
            with closing(self._connect()) as db:
                if create:
                    db.execute("PRAGMA journal_mode=WAL")
                self._prepare(db, create)
        except sqlite3.DatabaseError as err:  # a file that is not SQLite, a locked or read-only one
            raise StoreError(f"{self.path}: cannot use it as the annotation database ({err}); "
                             "give a new file name, or one an earlier tagshift annotate wrote") from None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level None: no implicit transactions; each write opens its own below
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")  # an answer given is on disk, even after a power cut
        return db

    def _prepare(self, db: sqlite3.Connection, create: bool) -> None:
        """Check the file is a store this module reads, and make the table in an empty one."""
        if not create:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: not an annotation database tagshift annotate wrote (store version "
                                 f"{version}, expected {SCHEMA_VERSION})")
            return
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")  # two servers started at once on a new file: one makes the table
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: made by a newer tagshift (store version {version}, this one "
                                     f"reads {SCHEMA_VERSION}); upgrade tagshift")
                if version < SCHEMA_VERSION:
                    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                    if tables:
                        raise StoreError(f"{self.path}: a SQLite database of something else (tables "
                                         f"{', '.join(tables[:5])}); give a new file name for the annotations")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in a write transaction, committed when the block ends, rolled back on an error."""
        with self._write_lock, closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, task_id: str, annotator: str, answer: str, spans: list[dict[str, Any]], text: str,
            tokens: list[dict[str, Any]], source: str) -> Answer:
        """Store an answer, committed before this returns; it replaces only this annotator's
        earlier answer to the same task."""
        if answer not in ANSWERS:
            raise StoreError(f"answer {answer!r}: give one of {', '.join(ANSWERS)}")
        answered_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._transaction() as db:
            db.execute("DELETE FROM answers WHERE task_id = ? AND annotator = ?", (task_id, annotator))
            cursor = db.execute(
                "INSERT INTO answers (task_id, annotator, answer, spans, text, tokens, source, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, annotator, answer, json.dumps(spans, ensure_ascii=False), text,
                 json.dumps(tokens, ensure_ascii=False), source, answered_at))
            seq = cursor.lastrowid
        return Answer(seq, task_id, annotator, answer, spans, text, tokens, source, answered_at)

    def undo(self, annotator: str, among: Container[str] | None = None) -> Answer | None:
        """Remove `annotator`'s latest answer (no one else's), of the tasks `among` when given
        (a server undoes only answers to the tasks it shows), and return it; None when there is none."""
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM answers WHERE annotator = ? ORDER BY seq DESC", (annotator,))
            row = next((r for r in rows if among is None or r[1] in among), None)
            if row is None:
                return None
            db.execute("DELETE FROM answers WHERE seq = ?", (row[0],))
        return _answer(row)

    def answered(self, annotator: str) -> set[str]:
        """The tasks `annotator` has answered (accepted, rejected or skipped)."""
        with closing(self._connect()) as db:
            return {row[0] for row in db.execute("SELECT task_id FROM answers WHERE annotator = ?", (annotator,))}

    def answers(self, annotator: str | None = None) -> list[Answer]:
        """Every answer (or `annotator`'s), in the order they were given."""
        query, args = f"SELECT {_COLUMNS} FROM answers", ()
        if annotator is not None:
            query, args = query + " WHERE annotator = ?", (annotator,)
        with closing(self._connect()) as db:
            return [_answer(row) for row in db.execute(query + " ORDER BY seq", args)]

    def annotators(self) -> dict[str, int]:
        """Each annotator's number of answers."""
        with closing(self._connect()) as db:
            return dict(db.execute("SELECT annotator, COUNT(*) FROM answers GROUP BY annotator ORDER BY annotator"))


_COLUMNS = "seq, task_id, annotator, answer, spans, text, tokens, source, answered_at"


def _answer(row: tuple[Any, ...]) -> Answer:
    seq, task_id, annotator, answer, spans, text, tokens, source, answered_at = row
    return Answer(seq, task_id, annotator, answer, json.loads(spans), text, json.loads(tokens), source, answered_at)


def _check_path(path: Path, create: bool) -> None:
    """Refuse, before anything is opened, a database path that cannot be one."""
    if path.is_dir():
        raise StoreError(f"--db {path} is a directory; give a file name for the annotation database "
                         f"(e.g. {path / 'annotations.sqlite'})")
    if not path.exists():
        if not create:
            raise StoreError(f"--db {path}: no such file; give the database tagshift annotate wrote")
        parent = path.absolute().parent
        if not parent.is_dir():
            raise StoreError(f"--db {path}: its directory {path.parent} does not exist; create it first")
