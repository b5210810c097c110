"""Per-row counters that hand out ids: one statement adds to the counter, locks its row until
the transaction ends (so what is numbered commits in order) and returns the new value."""
from django.db import connection, models


def increment(model: type[models.Model], pk, field: str, by: int = 1) -> int | None:
    """Add `by` to `field` of the `model` row `pk` and return the new value; None without the row."""
    qn = connection.ops.quote_name
    column = model._meta.get_field(field).column
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {qn(model._meta.db_table)} SET {qn(column)} = {qn(column)} + %s "
            f"WHERE {qn(model._meta.pk.column)} = %s RETURNING {qn(column)}",
            [by, model._meta.pk.get_db_prep_value(pk, connection)],
        )
        row = cursor.fetchone()
    return row[0] if row else None
