"""Django's PostgreSQL backend; a transaction's BEGIN goes out with its first statement, and
its COMMIT, where the caller says so, with its last.

Django turns autocommit off for a transaction (`atomic`), and psycopg then sends BEGIN on the
first statement, waits for its answer, and only then sends the statement: a round trip of its
own, and the COMMIT is another. Here psycopg's connection stays in autocommit and the
transaction is this wrapper's: when Django has one open and the server has none yet, the BEGIN
and the statement go out in one pipeline (one round trip for both; a transaction that runs no
statement sends nothing at all). `commit_with_next()` sends the COMMIT in the pipeline of the
next statement, for a caller that knows that statement is its transaction's last (the worker's
events, content_jobs.events.stored_together): Django's commit then finds the transaction ended.

Everything else is Django's: savepoints, on_commit, rollbacks (psycopg rolls back when the server
has a transaction open, and does nothing when it has none).
"""
from __future__ import annotations

from contextlib import nullcontext

import psycopg
from django.db import ProgrammingError
from django.db.backends.postgresql import base
from psycopg import pq

IDLE = pq.TransactionStatus.IDLE
_PIPELINE = psycopg.Pipeline.is_supported()  # libpq 14 or later (psycopg's binary ships one)


class _Transaction:
    """What a psycopg connection's cursors need to know of the wrapper's transaction."""

    __slots__ = ("open", "commit_next", "committed")

    def __init__(self):
        self.open = False  # Django has a transaction open (autocommit off)
        self.commit_next = False  # the next statement is the transaction's last: COMMIT with it
        self.committed = False  # it was: nothing more may run in the transaction


def _state(conn: psycopg.Connection) -> _Transaction:
    state = getattr(conn, "_nexus_transaction", None)
    if state is None:
        state = conn._nexus_transaction = _Transaction()
    return state


def _begin_command(conn: psycopg.Connection) -> bytes:
    """BEGIN as psycopg writes it for the connection's settings."""
    parts = [b"BEGIN"]
    if conn.isolation_level is not None:
        parts += [b"ISOLATION LEVEL", psycopg.IsolationLevel(conn.isolation_level).name.replace("_", " ").encode()]
    if conn.read_only is not None:
        parts.append(b"READ ONLY" if conn.read_only else b"READ WRITE")
    if conn.deferrable is not None:
        parts.append(b"DEFERRABLE" if conn.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def _command(conn: psycopg.Connection, command: bytes) -> None:
    psycopg.Cursor(conn).execute(command, prepare=False)  # a plain cursor: no BEGIN of its own


def begin_if_needed(conn: psycopg.Connection) -> None:
    """Start the wrapper's transaction on the server now, in a round trip of its own (for what
    cannot go in a pipeline with it)."""
    state = _state(conn)
    if state.open and conn.pgconn.transaction_status == IDLE:
        _check_not_committed(state)
        _command(conn, _begin_command(conn))


def _check_not_committed(state: _Transaction) -> None:
    if state.committed:
        raise ProgrammingError("The transaction was committed with its last statement (commit_with_next); "
                               "no statement may follow it before the atomic block ends.")


class _TransactionMixin:
    """A cursor that sends the BEGIN (and the COMMIT) of the wrapper's transaction in one
    pipeline with a statement."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        conn = self._conn
        state = _state(conn)
        if not state.open or (conn.pgconn.transaction_status != IDLE and not state.commit_next):
            return super().execute(query, params, prepare=prepare, binary=binary)
        _check_not_committed(state)
        begin = conn.pgconn.transaction_status == IDLE
        commit, state.commit_next = state.commit_next, False
        # A pipeline's end sends what it holds, waits for every answer and raises the first error;
        # without pipelines (a libpq older than 14), each goes on its own.
        with conn.pipeline() if _PIPELINE else nullcontext():
            if begin:
                _command(conn, _begin_command(conn))
            super().execute(query, params, prepare=prepare, binary=binary)
            if commit:
                _command(conn, b"COMMIT")
        state.committed = commit
        return self

    def executemany(self, *args, **kwargs):
        begin_if_needed(self._conn)
        return super().executemany(*args, **kwargs)

    def copy(self, *args, **kwargs):
        begin_if_needed(self._conn)
        return super().copy(*args, **kwargs)

    def stream(self, *args, **kwargs):
        begin_if_needed(self._conn)
        return super().stream(*args, **kwargs)


class ServerBindingCursor(_TransactionMixin, base.ServerBindingCursor):
    pass


class Cursor(_TransactionMixin, base.Cursor):
    pass


_CURSORS = {base.ServerBindingCursor: ServerBindingCursor, base.Cursor: Cursor}


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        params["cursor_factory"] = _CURSORS.get(params["cursor_factory"], params["cursor_factory"])
        return params

    def _set_autocommit(self, autocommit):
        # psycopg's connection stays in autocommit; the transaction is the cursors' to begin.
        with self.wrap_database_errors:
            if not self.connection.autocommit:
                self.connection.autocommit = True
            status = self.connection.pgconn.transaction_status
            if autocommit and status != IDLE:  # as psycopg refuses it
                raise psycopg.ProgrammingError(f"can't change autocommit now: connection in transaction status {status.name}")
        state = _state(self.connection)
        state.open, state.commit_next, state.committed = not autocommit, False, False

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._transaction_ended()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._transaction_ended()

    def _transaction_ended(self) -> None:
        if self.connection is not None:
            state = _state(self.connection)
            state.commit_next = state.committed = False

    def create_cursor(self, name=None):
        if name:
            # A named cursor is DECLAREd by psycopg's own cursor class: begin first, and hold
            # it past the transaction only in autocommit (as Django's own does).
            begin_if_needed(self.connection)
            if self.settings_dict["OPTIONS"].get("server_side_binding") is True:
                cursor = self.connection.cursor(name, scrollable=False, withhold=self.autocommit)
            else:
                cursor = base.ServerSideCursor(self.connection, name=name, scrollable=False, withhold=self.autocommit)
            return self._with_timezone(cursor)
        return super().create_cursor(name)

    def _with_timezone(self, cursor):
        tzloader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if self.timezone != tzloader.timezone:
            base.register_tzloader(self.timezone, cursor)
        return cursor

    def commit_with_next(self) -> bool:
        """Send the COMMIT of the outermost atomic block with the next statement, which the
        caller promises is the block's last; False (and nothing changed) when this block is not
        one whose commit that can be: nested in another block, or with a savepoint taken, or
        already failed."""
        if (self.autocommit or not self.in_atomic_block or len(self.atomic_blocks) != 1 or self.savepoint_ids
                or self.needs_rollback or self.connection is None):
            return False
        _state(self.connection).commit_next = True
        return True
