"""SQLite through the standard library: one connection per request, schema created on first run.

Several worker processes share the file, so the database uses WAL mode (readers
do not block the writer) and a busy timeout instead of failing on a lock.
"""

from __future__ import annotations

import sqlite3
import time

from flask import Flask, current_app, g

BUSY_TIMEOUT = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS note (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS upload (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filename TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL
);
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    conn.row_factory = sqlite3.Row
    return conn


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_db(path: str) -> None:
    """Idempotent, so every worker (and every reload) may run it at start.

    Workers start at the same moment on a fresh file. SQLite answers "database is locked"
    at once, without waiting out the busy timeout, when two connections could deadlock
    upgrading their locks; BEGIN IMMEDIATE takes the write lock before reading anything,
    so the schema step waits its turn instead. Switching to WAL needs the file to itself,
    so it is retried for as long as the busy timeout would have waited.
    """
    conn = connect(path)
    conn.isolation_level = None
    try:
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        conn.close()


def init_app(app: Flask) -> None:
    init_db(app.config["DATABASE"])
    app.teardown_appcontext(close_db)


def add_note(title: str, body: str) -> dict:
    conn = get_db()
    with conn:
        cur = conn.execute("INSERT INTO note (title, body) VALUES (?, ?)", (title, body))
    return get_note(cur.lastrowid)


def get_note(note_id: int) -> dict | None:
    row = get_db().execute("SELECT id, title, body, created FROM note WHERE id = ?",
                           (note_id,)).fetchone()
    return dict(row) if row else None


def list_notes() -> list[dict]:
    rows = get_db().execute("SELECT id, title, body, created FROM note ORDER BY id DESC").fetchall()
    return [dict(r) for r in rows]


def record_upload(filename: str, size: int) -> None:
    conn = get_db()
    with conn:
        conn.execute("INSERT INTO upload (filename, size) VALUES (?, ?) "
                     "ON CONFLICT(filename) DO UPDATE SET size = excluded.size", (filename, size))


def list_uploads() -> list[dict]:
    return [dict(r) for r in get_db().execute("SELECT filename, size FROM upload ORDER BY filename")]
