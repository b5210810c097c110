"""Events lose the index of their time: streams read them by (job, seq) and (company,
company_seq), the unique constraints' indexes, and nothing reads them by time, so the index was
one more entry written for every event.

The index is dropped by name (the one Django gave it in 0001_initial, the same on every
database) rather than by AlterField, which SQLite carries out by copying the whole events table.
"""
from django.db import migrations, models

TABLE = "content_jobs_jobevent"
INDEX = "content_jobs_jobevent_created_at_031fb817"


class Migration(migrations.Migration):

    dependencies = [
        ("content_jobs", "0006_jobs_counted"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} (created_at)",
                ),
            ],
            state_operations=[
                migrations.AlterField(model_name="jobevent", name="created_at", field=models.DateTimeField()),
            ],
        ),
    ]
