"""Per-row counters that hand out ids: one statement adds to the counter, locks its row until
the transaction ends (so what is numbered commits in order) and returns the new value."""
from functools import cache

from django.db import connection, models

from .statements import column, columns, insert, inserted, instance_values, table


def increment(model: type[models.Model], pk, field: str, by: int = 1) -> int | None:
    """Add `by` to `field` of the `model` row `pk` and return the new value; None without the row."""
    with connection.cursor() as cursor:
        cursor.execute(_increment_sql(model, connection.vendor, field),
                       [by, model._meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    return row[0] if row else None


@cache
def _increment_sql(model: type[models.Model], vendor: str, field: str) -> str:
    counter = column(model, field)
    return f"UPDATE {table(model)} SET {counter} = {counter} + %s WHERE {column(model, 'pk')} = %s RETURNING {counter}"


def insert_numbered(instance: models.Model, names: tuple[str, ...], *, number: str, counter: type[models.Model],
                    counter_pk, counter_field: str) -> models.Model:
    """INSERT the `names` fields of an unsaved instance, its field `number` set to the next value
    of a counter (one added to `counter_field` of the `counter` row `counter_pk`, as increment
    adds it); sets its database-made primary key. On PostgreSQL one statement does both (a
    round trip less); elsewhere increment, then the insert."""
    model = type(instance)
    if connection.vendor != "postgresql":
        setattr(instance, number, increment(counter, counter_pk, counter_field))
        return insert(instance, names + (number,))
    with connection.cursor() as cursor:
        cursor.execute(_insert_numbered_sql(model, names, number, counter, counter_field),
                       [counter._meta.pk.get_db_prep_value(counter_pk, connection), *instance_values(instance, names)])
        pk, value = cursor.fetchone()
    setattr(instance, number, value)
    return inserted(instance, pk)


@cache
def _insert_numbered_sql(model: type[models.Model], names: tuple, number: str, counter: type[models.Model],
                         counter_field: str) -> str:
    last = column(counter, counter_field)
    given = ", ".join(["%s"] * len(names))
    return (
        f"WITH counted AS (UPDATE {table(counter)} SET {last} = {last} + 1 WHERE {column(counter, 'pk')} = %s"
        f" RETURNING {last} AS value)"
        f" INSERT INTO {table(model)} ({columns(model, names)}, {column(model, number)})"
        f" SELECT {given}, counted.value FROM counted"
        f" RETURNING {column(model, 'pk')}, {column(model, number)}"
    )
