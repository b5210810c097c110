"""Per-row counters that hand out ids: one statement adds to the counter, locks its row until
the transaction ends (so what is numbered commits in order) and returns the new value."""
from functools import cache

from django.db import connection, models

from .statements import column, table


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
