"""Statements written out for the writes that every run makes: a job's start, each progress
value, its end, the event stored with each, and the lease check before each log line.

The ORM builds and compiles each statement anew, which was most of their cost: on SQLite a
progress write took 1.2 ms through `select_for_update().get()`, `save()` and `create()`,
against 0.3 ms for a log line, whose statements were already written out. Here a statement is
built once per shape and kept; values are prepared by their model fields, as the ORM would.
The log lines' statements (job_logs.services) and the worker's claim of its task rows
(content_jobs.task_rows) name their tables and columns with the helpers here too, and the two
lookups every API request makes (its token, its membership) are select_with statements, or one
statement of content_jobs.authentication under a company's path. db() is the thread's
database connection, as django.db.connection is, for less.
"""
import functools
import threading
import uuid
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections, models

_thread = threading.local()


def db():
    """This thread's connection to the default database: Django's `connections["default"]`
    (what `django.db.connection` stands for), which Django makes once for each thread and
    keeps; looked up here at 0.1 µs, where Django's lookup through asgiref's Local (an
    exception raised and caught in each) takes 1.8 µs, and a no-op job in the embedded worker
    made 45 of them (about 7% of its time)."""
    try:
        return _thread.db
    except AttributeError:
        _thread.db = connections[DEFAULT_DB_ALIAS]
        return _thread.db


def prepared(model: type[models.Model], values: dict) -> list:
    """The values (field name: value) as the database takes them, prepared by their fields."""
    conn = db()
    preparer = _preparer
    return [preparer(model, name)(value, conn) for name, value in values.items()]


@functools.cache
def _preparer(model: type[models.Model], name: str):
    """What prepares a value of the field `name` of `model` for the database: its
    get_db_prep_save, with a shortcut for the values a run writes most (an aware datetime, a
    UUID, text, a float), which gives what get_db_prep_save gives them without its chain of
    calls through the field's layers (a fifth of a progress write's time on SQLite, and more
    on a cold CPU between a handler's calls)."""
    field = model._meta.get_field(name)
    slow = field.get_db_prep_save
    kind = type(field)
    if kind is models.DateTimeField:
        def prepare(value, db):
            if value.__class__ is datetime and value.tzinfo is not None:
                return db.ops.adapt_datetimefield_value(value)
            return slow(value, db)
    elif kind is models.UUIDField or (kind is models.ForeignKey and type(field.target_field) is models.UUIDField):
        def prepare(value, db):
            if value.__class__ is uuid.UUID:
                return value if db.features.has_native_uuid_field else value.hex
            return slow(value, db)
    elif kind in (models.CharField, models.TextField):
        def prepare(value, db):  # a str subclass (a choices enum's member) too, as the field leaves it
            return value if isinstance(value, str) else slow(value, db)
    elif kind is models.FloatField:
        def prepare(value, db):
            return value if value.__class__ is float else slow(value, db)
    else:
        prepare = slow
    return prepare


def column(model: type[models.Model], name: str) -> str:
    """The quoted column of a field ("pk": the primary key's)."""
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    return db().ops.quote_name(field.column)


def columns(model: type[models.Model], names) -> str:
    return ", ".join(column(model, name) for name in names)


def table(model: type[models.Model]) -> str:
    return db().ops.quote_name(model._meta.db_table)


@functools.cache
def _update_sql(model: type[models.Model], vendor: str, set_names: tuple, where_names: tuple, add_one: tuple,
                returning: tuple) -> str:
    sets = [f"{column(model, name)} = %s" for name in set_names]
    sets += [f"{column(model, name)} = {column(model, name)} + 1" for name in add_one]
    where = " AND ".join(f"{column(model, name)} = %s" for name in where_names)
    return f"UPDATE {table(model)} SET {', '.join(sets)} WHERE {where} RETURNING {columns(model, returning)}"


def update_returning(model: type[models.Model], *, values: dict, where: dict, add_one: tuple[str, ...] = (),
                     returning: tuple[str, ...]) -> tuple | None:
    """UPDATE the rows of `model` matching `where` (names to values, all equal) with `values`,
    adding one to each field named in `add_one`; the first updated row's `returning` fields,
    as the database gives them (None if no row matched)."""
    sql, params = update_statement(model, values=values, where=where, add_one=add_one, returning=returning)
    with db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def update_statement(model: type[models.Model], *, values: dict, where: dict, add_one: tuple[str, ...] = (),
                     returning: tuple[str, ...]) -> tuple[str, list]:
    """The statement of update_returning and its parameters, for a statement that holds it
    (content_jobs.task_rows.claim_and_start)."""
    sql = _update_sql(model, db().vendor, tuple(values), tuple(where), add_one, returning)
    return sql, prepared(model, values) + prepared(model, where)


def update_returning_instance(model: type[models.Model], *, values: dict, where: dict,
                              add_one: tuple[str, ...] = ()):
    """update_returning, giving the updated row as a model instance (its fields converted from
    the database's values, as a query would); None if no row matched."""
    row = update_returning(model, values=values, where=where, add_one=add_one, returning=row_fields(model))
    return None if row is None else instance_from_row(model, row)


def row_fields(model: type[models.Model]) -> tuple[str, ...]:
    """The concrete fields of `model`, in the order instance_from_row reads a row."""
    return _row_reader(model, db().vendor)[0]


def instance_from_row(model: type[models.Model], row) -> models.Model:
    """A model instance from a row of its row_fields as the database gives them, each value
    converted as a query would."""
    conn = db()
    names, converters = _row_reader(model, conn.vendor)
    row = list(row)
    for index, column, functions in converters:
        for convert in functions:
            row[index] = convert(row[index], column, conn)
    return model.from_db(conn.alias, names, row)


def row_parts(row, *models: type[models.Model]) -> list:
    """A row that reads the row_fields of each of `models` in turn, then anything else: its
    part for each model, then the rest (select_with, and statements that join or return
    several tables' rows)."""
    parts, start = [], 0
    for model in models:
        end = start + len(row_fields(model))
        parts.append(row[start:end])
        start = end
    return [*parts, row[start:]]


@functools.cache
def _row_reader(model: type[models.Model], vendor: str) -> tuple[tuple, list]:
    """The concrete fields of `model`, and the converters the ORM would apply to their
    database values (by position)."""
    names, converters, conn = [], [], db()
    for index, field in enumerate(model._meta.concrete_fields):
        names.append(field.attname)
        column = field.get_col(model._meta.db_table)
        functions = conn.ops.get_db_converters(column) + field.get_db_converters(conn)
        if functions:
            converters.append((index, column, functions))
    return tuple(names), converters


@functools.cache
def _select_with_sql(model: type[models.Model], vendor: str, related: str, where_names: tuple) -> str:
    other = model._meta.get_field(related).related_model
    own, theirs = table(model), table(other)
    read = [f"{own}.{column(model, name)}" for name in row_fields(model)]
    read += [f"{theirs}.{column(other, name)}" for name in row_fields(other)]
    where = " AND ".join(f"{own}.{column(model, name)} = %s" for name in where_names)
    return (f"SELECT {', '.join(read)} FROM {own} JOIN {theirs} ON {theirs}.{column(other, 'pk')} = "
            f"{own}.{column(model, related)} WHERE {where}")


def select_with(model: type[models.Model], related: str, where: dict):
    """The `model` row matching `where` (names to values, all equal; at most one row may), with
    the row of its `related` foreign key read in the same statement, as select_related reads
    it; None without it."""
    conn = db()
    with conn.cursor() as cursor:
        cursor.execute(_select_with_sql(model, conn.vendor, related, tuple(where)), prepared(model, where))
        row = cursor.fetchone()
    if row is None:
        return None
    other = model._meta.get_field(related).related_model
    own, theirs, _ = row_parts(row, model, other)
    instance = instance_from_row(model, own)
    setattr(instance, related, instance_from_row(other, theirs))
    return instance


@functools.cache
def _select_locked_sql(model: type[models.Model], vendor: str, names: tuple) -> str:
    lock = " FOR UPDATE" if db().features.has_select_for_update else ""
    return f"SELECT {columns(model, names)} FROM {table(model)} WHERE {column(model, 'pk')} = %s{lock}"


def select_locked(model: type[models.Model], pk, names: tuple[str, ...]) -> tuple | None:
    """The `names` fields of the `model` row `pk` as the database gives them, the row locked as
    the ORM's select_for_update locks it (SQLite has no FOR UPDATE: its write lock orders
    writers); None without the row."""
    conn = db()
    with conn.cursor() as cursor:
        cursor.execute(_select_locked_sql(model, conn.vendor, names), [model._meta.pk.get_db_prep_value(pk, conn)])
        return cursor.fetchone()


def insert_sql(model: type[models.Model], names: tuple[str, ...], rows: int = 1, returning: tuple[str, ...] = ()) -> str:
    """An INSERT of `rows` rows of the `names` fields of `model` (a %s each, row after row),
    giving back the `returning` fields ("pk": the primary key) of each row stored."""
    return _insert_sql(model, db().vendor, names, rows, returning)


@functools.cache
def _insert_sql(model: type[models.Model], vendor: str, names: tuple, rows: int, returning: tuple) -> str:
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    sql = f"INSERT INTO {table(model)} ({columns(model, names)}) VALUES {', '.join([row] * rows)}"
    return f"{sql} RETURNING {columns(model, returning)}" if returning else sql


def insert_statement(instance: models.Model) -> tuple[str, list]:
    """An INSERT of an unsaved instance whose primary key its default has made, every concrete
    field's value as the ORM's insert takes it (the field's pre_save first: auto_now_add sets
    its time), and its parameters: for a statement that holds it (counters.insert_numbered).
    Mark the instance stored with inserted() once it is."""
    model = type(instance)
    for field in model._meta.concrete_fields:
        field.pre_save(instance, True)
    names = row_fields(model)
    return insert_sql(model, names), instance_values(instance, names)


def instance_values(instance: models.Model, names: tuple[str, ...]) -> list:
    """The `names` fields of an instance, prepared as the database takes them."""
    model = type(instance)
    return prepared(model, {name: getattr(instance, model._meta.get_field(name).attname) for name in names})


def inserted(instance: models.Model, pk) -> models.Model:
    """The instance, stored now with the primary key `pk`, as a save leaves it."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = db().alias
    return instance
