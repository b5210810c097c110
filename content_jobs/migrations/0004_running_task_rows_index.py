"""An index of the task rows that are running, for the reaper (services.runs_reap).

django-tasks-db indexes only its ready rows. The reaper looks for running rows claimed more
than a lease ago, every NEXUS_HEARTBEAT_SECONDS in every worker process; without this index
each pass read the table's every row, finished ones included (16 ms for 29,000 rows on
PostgreSQL here), until retention pruned them. Partial: running rows are few at any time.
"""
from django.db import migrations

TABLE = "django_tasks_database_dbtaskresult"
INDEX = "nexus_task_running_started"


class Migration(migrations.Migration):

    dependencies = [
        ("content_jobs", "0003_indexes_without_twins"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} (started_at) WHERE status = 'RUNNING'",
            f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
