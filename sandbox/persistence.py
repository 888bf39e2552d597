"""Optional durable state for the sandboxes: one SQLite file per sandbox under `SHOP_SANDBOX_STATE_DIR`.

Each object is one JSON row keyed by (kind, id). An operation's rows are written in one transaction
before its answer leaves, so a sandbox killed at any instant restarts with either all or none of a
change, never half. WAL mode with `synchronous=NORMAL` makes a commit a write to the log without an
fsync: it survives the process being killed (SIGKILL), which is what the crash tests do, though not
the machine losing power, which a development sandbox need not survive. Rows are upserted in place,
so their rowid keeps the order in which objects were first written (events are listed in it).

Without a state directory there is no journal at all and the sandboxes pay nothing for it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = tuple[str, str, dict[str, Any]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (kind, key)
)
"""
_UPSERT = (
    "INSERT INTO objects (kind, key, state) VALUES (?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state"
)


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Autocommit mode: transactions are opened explicitly, one per change.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        # Callers write under their own state lock already; this one only guards close().
        self._guard = threading.Lock()

    def write(self, rows: Iterable[Row], deleted: Iterable[tuple[str, str]] = ()) -> None:
        encoded = [(kind, key, json.dumps(state, separators=(",", ":"))) for kind, key, state in rows]
        removed = list(deleted)
        if not encoded and not removed:
            return
        with self._guard:
            self._db.execute("BEGIN")
            try:
                if encoded:
                    self._db.executemany(_UPSERT, encoded)
                if removed:
                    self._db.executemany("DELETE FROM objects WHERE kind = ? AND key = ?", removed)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every (key, state) of `kind`, in the order the objects were first written."""
        with self._guard:
            cursor = self._db.execute("SELECT key, state FROM objects WHERE kind = ? ORDER BY rowid", (kind,))
            return [(key, json.loads(state)) for key, state in cursor.fetchall()]

    def clear(self) -> None:
        with self._guard:
            self._db.execute("DELETE FROM objects")

    def close(self) -> None:
        with self._guard:
            self._db.close()


def open_journal(state_dir: Path | None, name: str) -> Journal | None:
    """The journal `<state_dir>/<name>.sqlite3`, or None (memory only) without a state directory."""
    return Journal(state_dir / f"{name}.sqlite3") if state_dir else None
