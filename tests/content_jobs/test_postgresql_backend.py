"""The PostgreSQL backend (nexus_site.postgresql): a transaction's BEGIN goes out with its first
statement, its COMMIT with its last where the caller says so, and a transaction is still one.

Round trips are read off the wire: libpq's trace of each connection the test's thread uses, one
ReadyForQuery from the server for each (its status: T in a transaction, I out of one, E failed).
"""
import tempfile

import psycopg
import pytest
from django.db import IntegrityError, ProgrammingError, connection, transaction

from content_jobs import services
from content_jobs.models import Company, ContentJob
from nexus_site.postgresql import base
from tests.content_jobs.test_task_rows import run_loop  # and its job type test.quiet

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the backend is PostgreSQL's"),
]


@pytest.fixture
def wire(monkeypatch):
    """The server's ReadyForQuery statuses on the test thread's connections, in order, as a
    string (one letter a round trip); `wire()` reads what came since the last call.

    Statements are not prepared on the traced connections: psycopg prepares a statement by a
    round trip of its own at the run that reaches DATABASE_PREPARE_THRESHOLD, and a test's
    INSERT reached it or not by what earlier tests had run on the same connection."""
    trace = tempfile.TemporaryFile(mode="a+b")  # appended to by every traced connection
    live = []
    thresholds = {}

    def start(conn):
        thresholds.setdefault(conn, conn.prepare_threshold)
        conn.prepare_threshold = None
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        live.append(conn)

    def stop(conn):
        conn.pgconn.untrace()  # libpq writes its trace out here
        live.remove(conn)

    new_connection, close = base.DatabaseWrapper.get_new_connection, base.DatabaseWrapper._close

    def get_new_connection(self, params):
        conn = new_connection(self, params)
        start(conn)
        return conn

    def _close(self):
        if self.connection in live:
            stop(self.connection)
        return close(self)

    monkeypatch.setattr(base.DatabaseWrapper, "get_new_connection", get_new_connection)
    monkeypatch.setattr(base.DatabaseWrapper, "_close", _close)
    connection.ensure_connection()
    start(connection.connection)
    read = 0

    def since() -> str:
        nonlocal read
        for conn in list(live):
            stop(conn)
            start(conn)
        trace.seek(read)
        text = trace.read()
        read += len(text)
        return "".join(line.split(b"\t")[-1].strip().decode() for line in text.splitlines()
                       if line.startswith(b"B\t5\tReadyForQuery"))

    yield since
    for conn in list(live):
        stop(conn)
    for conn, threshold in thresholds.items():
        conn.prepare_threshold = threshold
    trace.close()


def other_connection():
    settings = connection.settings_dict
    return psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                           dbname=settings["NAME"], autocommit=True)


def seen_by_another(slug: str) -> bool:
    with other_connection() as other:
        return other.execute("SELECT count(*) FROM content_jobs_company WHERE slug = %s", [slug]).fetchone()[0] == 1


def test_a_transactions_begin_goes_with_its_first_statement(wire):
    wire()
    with transaction.atomic():
        Company.objects.create(slug="a", name="A")
        Company.objects.create(slug="b", name="B")
    # BEGIN and the first INSERT, the second INSERT, the COMMIT (psycopg's own: BEGIN alone first)
    assert wire() == "TTI"
    assert set(Company.objects.values_list("slug", flat=True)) == {"a", "b"}


def test_a_block_that_runs_no_statement_sends_nothing(wire):
    wire()
    with transaction.atomic():
        pass
    assert wire() == ""


def test_a_transaction_is_still_one_seen_whole_at_its_commit_and_undone_by_its_rollback():
    with transaction.atomic():
        Company.objects.create(slug="inside", name="Inside")
        assert not seen_by_another("inside")
    assert seen_by_another("inside")

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Company.objects.create(slug="undone", name="Undone")
            with transaction.atomic():  # a savepoint, undone with the rest
                Company.objects.create(slug="nested", name="Nested")
            raise RuntimeError("the block fails")
    assert not Company.objects.filter(slug__in=["undone", "nested"]).exists()


def test_a_first_statement_that_fails_rolls_its_transaction_back_and_the_connection_goes_on(wire):
    Company.objects.create(slug="taken", name="Taken")
    wire()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Company.objects.create(slug="taken", name="Again")
    # the pipeline of BEGIN and the INSERT failed; ROLLBACK (then psycopg's DEALLOCATE ALL, as
    # after every rollback, when the connection has statements prepared)
    assert wire() in ("EI", "EII")
    Company.objects.create(slug="after", name="After")
    assert Company.objects.filter(slug__in=["taken", "after"]).count() == 2


def test_commit_with_next_commits_with_that_statement_and_runs_on_commit_after_the_block(wire):
    ran = []
    wire()
    with transaction.atomic():
        Company.objects.create(slug="first", name="First")
        transaction.on_commit(lambda: ran.append("on_commit"))
        assert connection.commit_with_next() is True
        Company.objects.create(slug="last", name="Last")
        assert seen_by_another("first") and seen_by_another("last")
        assert ran == []
        with pytest.raises(ProgrammingError, match="committed with its last statement"):
            Company.objects.count()
    assert ran == ["on_commit"]
    assert wire() == "TI"  # BEGIN and the first INSERT; the last INSERT and the COMMIT
    assert Company.objects.count() == 2


def test_a_last_statement_that_fails_stores_nothing_of_its_transaction():
    Company.objects.create(slug="taken", name="Taken")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Company.objects.create(slug="kept-back", name="Kept back")
            connection.commit_with_next()
            Company.objects.create(slug="taken", name="Again")
    assert list(Company.objects.values_list("slug", flat=True)) == ["taken"]


def test_commit_with_next_is_refused_where_the_block_does_not_end_the_transaction():
    with transaction.atomic():
        with transaction.atomic():  # a savepoint
            assert connection.commit_with_next() is False
        with transaction.atomic(savepoint=False):  # nested without one
            assert connection.commit_with_next() is False
        assert connection.commit_with_next() is True
        Company.objects.create(slug="last", name="Last")
    assert connection.commit_with_next() is False  # autocommit: no block at all
    assert seen_by_another("last")


def test_a_busy_loop_sends_a_jobs_begin_and_commit_with_its_statements(company, wire):
    """A busy worker's job on PostgreSQL: the statement that writes the run's end, closes its
    row, claims the next and starts that job (with the BEGIN), then both jobs' events (with the
    COMMIT): two round trips, where psycopg's own BEGIN and COMMIT and the end's own statement
    made five."""
    jobs = [services.job_submit(company=company, job_type="test.quiet", params={})[0] for _ in range(3)]
    wire()
    run_loop("loop-wire")
    # each claim (with the BEGIN, and the end of the run before) and its events (with the COMMIT)
    assert wire() == "TI" * 4
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.worker_id) == (ContentJob.Status.DONE, "loop-wire")


def test_a_runs_progress_and_its_end_commit_with_their_events(company, wire):
    """A progress write outside a transaction: the job's UPDATE (with the BEGIN), then its
    event (with the COMMIT); a run's end written alone, the same."""
    from content_jobs import runner

    job, _ = services.job_submit(company=company, job_type="test.quiet", params={})
    job = runner.start_job(job.pk, worker_id="wire")
    wire()
    services.job_report_progress(job=job, progress=50.0, stage="half", attempt=job.attempt)
    assert wire() == "TI"
    services.job_complete(job=job, result={"ok": True}, attempt=job.attempt)
    assert wire() == "TI"
    job.refresh_from_db()
    assert (job.status, job.progress, job.stage, job.result) == (ContentJob.Status.DONE, 100.0, "half", {"ok": True})
    assert list(job.events.order_by("seq").values_list("type", flat=True)) == [
        "content_job.status", "content_job.running", "content_job.progress", "content_job.done"]
