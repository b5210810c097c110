"""Per-row counters that hand out ids: one statement adds to the counter, locks its row until
the transaction ends (so what is numbered commits in order) and returns the new value."""
from functools import cache
from itertools import chain

from django.db import models

from .statements import column, columns, db, insert_sql, inserted, instance_values, table


def increment(model: type[models.Model], pk, field: str, by: int = 1) -> int | None:
    """Add `by` to `field` of the `model` row `pk` and return the new value; None without the row."""
    conn = db()
    with conn.cursor() as cursor:
        cursor.execute(_increment_sql(model, conn.vendor, field), [by, model._meta.pk.get_db_prep_value(pk, conn)])
        row = cursor.fetchone()
    return row[0] if row else None


@cache
def _increment_sql(model: type[models.Model], vendor: str, field: str) -> str:
    counter = column(model, field)
    return f"UPDATE {table(model)} SET {counter} = {counter} + %s WHERE {column(model, 'pk')} = %s RETURNING {counter}"


def insert_numbered(instances: list[models.Model], names: tuple[str, ...], *, number: str,
                    counter: type[models.Model], counter_pk, counter_field: str,
                    along: list[tuple[str, list]] = ()) -> list[models.Model]:
    """INSERT the `names` fields of unsaved instances, in order, by one statement, their field
    `number` set to the next values of a counter (as many added to `counter_field` of the
    `counter` row `counter_pk`, as increment adds them); sets their database-made primary keys.
    `along` are other statements (SQL and parameters; INSERTs that return nothing) to run with
    it, first. On PostgreSQL one statement does all of it, those as parts of its WITH (so,
    outside a transaction, it is all stored or none of it, in one round trip); elsewhere they
    run one by one (inside a transaction, to be stored together), then increment, then the
    insert."""
    model, n = type(instances[0]), len(instances)
    rows = [instance_values(instance, names) for instance in instances]
    conn = db()
    if conn.vendor == "postgresql":
        sql = _insert_numbered_sql(model, conn.vendor, names, number, counter, counter_field, n,
                                   tuple(statement for statement, _ in along))
        params = [*chain.from_iterable(params for _, params in along),
                  n, counter._meta.pk.get_db_prep_value(counter_pk, conn), *chain.from_iterable(rows)]
    else:
        with conn.cursor() as cursor:
            for statement, params in along:
                cursor.execute(statement, params)
        last = increment(counter, counter_pk, counter_field, by=n)
        sql = insert_sql(model, names + (number,), n, returning=("pk", number))
        params = [*chain.from_iterable(row + [last - n + 1 + i] for i, row in enumerate(rows))]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        pks = {value: pk for pk, value in cursor.fetchall()}  # by number: RETURNING promises no order
    first = max(pks) - n + 1
    for i, instance in enumerate(instances):
        setattr(instance, number, first + i)
        inserted(instance, pks[first + i])
    return instances


@cache
def _insert_numbered_sql(model: type[models.Model], vendor: str, names: tuple, number: str,
                         counter: type[models.Model], counter_field: str, n: int, along: tuple = ()) -> str:
    """The n rows' numbers are the counter's new value less n - 1, ..., less 0, in order."""
    last = column(counter, counter_field)
    given = ", ".join(["%s"] * len(names))
    rows = ", ".join(f"({given}, (SELECT value FROM counted) - {n - 1 - i})" for i in range(n))
    return (
        "WITH " + "".join(f"along_{i} AS ({statement}), " for i, statement in enumerate(along)) +
        f"counted AS (UPDATE {table(counter)} SET {last} = {last} + %s WHERE {column(counter, 'pk')} = %s"
        f" RETURNING {last} AS value)"
        f" INSERT INTO {table(model)} ({columns(model, names)}, {column(model, number)}) VALUES {rows}"
        f" RETURNING {column(model, 'pk')}, {column(model, number)}"
    )

