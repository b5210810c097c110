"""Django's SQLite backend, with the write lock taken in-process first.

SQLite lets one transaction write at a time. Threads that find the lock taken wait in
SQLite's busy handler, which sleeps in steps of up to 100 ms and tries again: under a few
concurrent writers (request threads, the embedded worker) most of a write's time is that
sleep, and its p99 is seconds. Here a write transaction (BEGIN IMMEDIATE or EXCLUSIVE) first
takes a lock of this process for the database file, so the writers of one process queue and
each starts the moment the previous one commits. Other processes (a management command) still
meet at SQLite's own lock and its busy timeout.

Django's cursor rewrites each statement's %s placeholders as SQLite's ? by a regular
expression, on every execution: 5% of a no-op job's time in the embedded worker (py-spy). Here
the rewritten text of a statement is kept, for the few hundred statements a process runs again
and again.
"""
from __future__ import annotations

import functools
import threading

from django.db.backends.sqlite3 import base

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(name), threading.Lock())


@functools.lru_cache(maxsize=2048)
def _qmark(query: str) -> str:
    """Django's rewrite of a statement's "format" placeholders (%s) as "qmark" ones (?)."""
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class CursorWrapper(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, its rewrite of a statement kept (the "pyformat" style, with
    named parameters, still rewritten each time)."""

    def convert_query(self, query, *, param_names=None):
        if param_names is None:
            return _qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseWrapper(base.DatabaseWrapper):
    _held_write_lock: threading.Lock | None = None

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=CursorWrapper)

    def _start_transaction_under_autocommit(self):
        if self.transaction_mode not in ("IMMEDIATE", "EXCLUSIVE"):
            return super()._start_transaction_under_autocommit()
        lock = write_lock(self.settings_dict["NAME"])
        # Bounded like SQLite's own wait: past it, SQLite's busy timeout takes over.
        acquired = lock.acquire(timeout=float(self.settings_dict["OPTIONS"].get("timeout", 5)))
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            if acquired:
                lock.release()
            raise
        if acquired:
            self._held_write_lock = lock

    def _release_write_lock(self) -> None:
        lock, self._held_write_lock = self._held_write_lock, None
        if lock is not None:
            lock.release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_write_lock()
