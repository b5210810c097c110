"""The written-out statements' values (content_jobs.statements.prepared) and the stream token
of a job's events (content_jobs.tokens): the same values the ORM and Django's signing give."""
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.core import signing
from django.db import connection
from django.utils import timezone

from content_jobs import statements, tokens
from content_jobs.models import ContentJob, JobEvent
from content_jobs.tokens import TokenError, job_id_from_stream_token, stream_token_for
from job_logs.models import LogLine

AWARE = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt_timezone.utc)
VALUES = [
    (ContentJob, "updated_at", AWARE),
    (ContentJob, "updated_at", AWARE.astimezone(ZoneInfo("Asia/Kolkata"))),  # the same instant
    (ContentJob, "updated_at", AWARE.astimezone(timezone.get_fixed_timezone(-150))),
    (ContentJob, "finished_at", None),
    (ContentJob, "id", uuid.UUID("6f1c2a34-93b5-4c9e-9d0c-5a8e2b7f1e40")),
    (ContentJob, "id", "6f1c2a34-93b5-4c9e-9d0c-5a8e2b7f1e40"),  # text: the field converts it
    (ContentJob, "company", uuid.UUID("0b7e4a52-1d3c-4f6a-8e9b-2c5d7f1a3e60")),
    (ContentJob, "company", None),
    (JobEvent, "job", uuid.UUID("6f1c2a34-93b5-4c9e-9d0c-5a8e2b7f1e40")),
    (ContentJob, "stage", "step 2/3"),
    (ContentJob, "stage", 7),  # not text: the field makes it text
    (ContentJob, "status", ContentJob.Status.RUNNING),  # a str subclass
    (ContentJob, "progress", 42.5),
    (ContentJob, "progress", 42),  # an int: the field makes it a float
    (ContentJob, "attempt", 3),
    (JobEvent, "data", '{"a": 1}'),
    (LogLine, "created_at", AWARE),
    (LogLine, "job", uuid.UUID("6f1c2a34-93b5-4c9e-9d0c-5a8e2b7f1e40")),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "name", "value"), VALUES, ids=[f"{m.__name__}.{n}-{i}" for i, (m, n, v) in enumerate(VALUES)])
def test_prepared_gives_what_the_field_gives(model, name, value):
    expected = model._meta.get_field(name).get_db_prep_save(value, connection)
    got = statements.prepared(model, {name: value})
    assert got == [expected]
    assert type(got[0]) is type(expected)


@pytest.mark.django_db
def test_a_naive_datetime_still_warns_and_is_read_in_the_default_time_zone():
    naive = datetime(2026, 3, 29, 1, 30, 15)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = statements.prepared(ContentJob, {"updated_at": naive})
    assert any("naive datetime" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert got == [ContentJob._meta.get_field("updated_at").get_db_prep_save(naive, connection)]


@pytest.mark.django_db
def test_a_time_in_another_zone_is_stored_as_the_same_instant(company):
    job = ContentJob.objects.create(company=company, job_type="demo.steps", params={}, created_at=AWARE,
                                    updated_at=AWARE)
    elsewhere = (AWARE + timedelta(hours=1)).astimezone(ZoneInfo("America/Los_Angeles"))
    statements.update_returning(ContentJob, values={"updated_at": elsewhere}, where={"id": job.pk},
                                returning=("id",))
    job.refresh_from_db()
    assert job.updated_at == AWARE + timedelta(hours=1)
    assert ContentJob.objects.filter(updated_at=elsewhere).count() == 1


@pytest.fixture
def clock(monkeypatch):
    """time.time() as the test sets it (Django's signing reads it too)."""
    now = [1_800_000_000.25]
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(tokens, "_signed", (0, {}))
    return now


def test_a_stream_token_is_the_one_django_signs_for_the_job_in_that_second(clock):
    job_id = uuid.uuid4()
    first = stream_token_for(job_id)
    assert first == signing.dumps(str(job_id), salt=tokens.SALT, compress=False)
    assert stream_token_for(str(job_id)) == first  # the same second, the same text
    assert job_id_from_stream_token(first) == str(job_id)
    assert stream_token_for(uuid.uuid4()) != first  # another job's


def test_a_stream_token_signed_later_is_stamped_later_and_outlives_the_first(clock, settings):
    settings.NEXUS_STREAM_TOKEN_SECONDS = 60
    job_id = uuid.uuid4()
    first = stream_token_for(job_id)
    clock[0] += 1.0
    second = stream_token_for(job_id)
    assert second != first
    clock[0] += 59.5  # 60.5 s after the first token, 59.5 s after the second
    with pytest.raises(TokenError) as raised:
        job_id_from_stream_token(first)
    assert raised.value.code == "token_expired"
    assert job_id_from_stream_token(second) == str(job_id)


@pytest.mark.django_db
def test_on_postgresql_a_statement_run_five_times_on_a_connection_is_prepared(company):
    """Statements are bound on the server, and prepared at their next run once they ran five
    times on a connection (settings: DATABASE_PREPARE_THRESHOLD), so PostgreSQL stops parsing
    and planning them."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    lookup = "SELECT slug FROM content_jobs_company WHERE id = %s"

    def prepared_now():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                           ["SELECT slug FROM content_jobs_company WHERE id = $1%"])
            return cursor.fetchone()[0]

    for run in range(1, 8):
        with connection.cursor() as cursor:
            cursor.execute(lookup, [company.pk])
            assert cursor.fetchone() == ("acme",)
        assert prepared_now() == (1 if run >= 6 else 0), f"after run {run}"


def test_a_statement_run_again_reads_its_parameters_and_literal_percents_as_the_first_time(db):
    """SQLite's cursor keeps a statement's rewritten placeholders (nexus_site.sqlite): the
    same text run again, and a text that differs only in its literal %%, each read right."""
    from django.db import connection

    for _ in range(3):
        for sql, params, expected in [("SELECT %s, '100%%'", [7], (7, "100%")),
                                      ("SELECT %s, '100%%s'", [8], (8, "100%s")),
                                      ("SELECT %s, %s", ["a", "b"], ("a", "b"))]:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                assert cursor.fetchone() == expected


def test_db_is_the_threads_own_connection_as_django_gives_it():
    """statements.db() keeps Django's connection of each thread: the same object Django's
    `connections["default"]` gives that thread, never another thread's."""
    import threading

    from django.db import connections

    from content_jobs.statements import db

    seen = {}

    def other():
        seen["db"], seen["django"] = db(), connections["default"]
        seen["again"] = db()
        connections["default"].close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert db() is connections["default"] is db()
    assert seen["db"] is seen["django"] is seen["again"]
    assert seen["db"] is not db()
