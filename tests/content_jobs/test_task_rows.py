"""The worker's run loop (content_jobs.worker.RunLoop) and its written-out statements on
django-tasks-db's task rows (content_jobs.task_rows): the rows the library would claim, in its
order, and the states it would leave them in."""
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.db.models import F
from django.utils import timezone
from django_tasks import task
from django_tasks_db.models import DBTaskResult

from content_jobs import registry, services, task_rows
from content_jobs.signals import job_changed
from content_jobs.models import Company, ContentJob, JobEvent
from content_jobs import worker as worker_module
from content_jobs.worker import RunLoop
from tests.conftest import race

S = ContentJob.Status


@task()
def echo(word: str) -> str:
    """A task of another kind than a job's run: the library's run_task runs it."""
    return word.upper()


@registry.register("test.quiet", params=registry.StrictParamsSerializer)
def quiet(ctx):
    return {"ran": True}


@registry.register("test.overtaken", params=registry.StrictParamsSerializer)
def overtaken(ctx):
    """Its job is taken over by a second attempt (as after a reap and a new start) just before
    the handler returns: the run's end is refused."""
    ContentJob.objects.filter(pk=ctx.job_id).update(attempt=F("attempt") + 1)
    return {"ran": True}


def claim(worker_id: str = "w1") -> DBTaskResult | None:
    with transaction.atomic():
        return task_rows.claim_next(worker_id=worker_id, backend_name="default")


def run_loop(worker_id: str = "loop-1") -> RunLoop:
    """Run what is ready in this thread, as a worker's batch does; returns once nothing is."""
    loop = RunLoop(queue_names=["*"], interval=0.02, batch=True, backend_name="default", startup_delay=False,
                   max_tasks=None, worker_id=worker_id, excluded_queue_names=[])
    loop.run()
    return loop


def test_each_claim_takes_the_row_the_library_would_claim_next(db):
    now = timezone.now()
    echo.enqueue("first")
    echo.using(priority=10).enqueue("urgent")
    echo.enqueue("second")
    echo.using(run_after=now - timedelta(minutes=5)).enqueue("overdue")
    echo.using(run_after=now + timedelta(hours=1)).enqueue("later")
    echo.using(priority=-10).enqueue("last")
    claimed = []
    while (expected := DBTaskResult.objects.ready().filter(backend_name="default").first()) is not None:
        row = claim()
        assert row.pk == expected.pk
        claimed.append(row.args_kwargs["args"][0])
    assert claimed == ["urgent", "overdue", "first", "second", "last"]
    assert claim() is None  # "later" is not due
    assert DBTaskResult.objects.get(status="READY").args_kwargs["args"] == ["later"]


def test_a_claim_marks_the_row_running_for_its_worker_as_the_library_does(db):
    echo.enqueue("again")
    row = DBTaskResult.objects.get()
    DBTaskResult.objects.filter(pk=row.pk).update(worker_ids=["w-before"])  # run once already
    before = timezone.now()
    claimed = claim("w-now")
    stored = DBTaskResult.objects.get()
    for got in (claimed, stored):
        assert (got.status, got.worker_ids, got.args_kwargs) == ("RUNNING", ["w-before", "w-now"], row.args_kwargs)
        assert before <= got.started_at <= timezone.now() and got.finished_at is None
    assert claimed.task_result.worker_ids == ["w-before", "w-now"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_claim_the_same_row():
    for n in range(20):
        echo.enqueue(f"word {n}")
    first, second = race(10, lambda worker_no, _round: claim(f"w{worker_no}"))
    rows = first + second
    assert None not in rows
    assert len({row.pk for row in rows}) == 20
    assert {row.pk: row.worker_ids for row in DBTaskResult.objects.all()} == {row.pk: row.worker_ids for row in rows}


def claim_plan() -> str:
    """How the database runs the claim's statement whatever its parameters: SQLite's plan with
    every parameter NULL; PostgreSQL's generic plan (what a prepared claim runs by, once psycopg
    prepared it)."""
    sql = task_rows._claim_sql(connection.vendor)
    params = task_rows._claim_params("w1", "default")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, [None] * len(params))
            return "\n".join(row[-1] for row in cursor.fetchall())
        numbered = sql.split("%s")
        sql = "".join(part + (f"${n}" if n < len(numbered) else "") for n, part in enumerate(numbered, 1))
        with transaction.atomic():
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            # Parameters bound by the client: "$1" is the prepared statement's, not these ones'.
            raw = psycopg.ClientCursor(connection.connection)
            raw.execute("PREPARE nexus_claim_plan AS " + sql)
            try:
                raw.execute(f"EXPLAIN EXECUTE nexus_claim_plan({', '.join(['%s'] * len(params))})", params)
                return "\n".join(row[0] for row in raw.fetchall())
            finally:
                raw.execute("DEALLOCATE nexus_claim_plan")


def test_a_claim_reads_the_ready_rows_by_their_index_whatever_its_parameters(db):
    """The library's index of ready rows is partial (status 'READY'): a claim that named the
    status by a parameter was planned anew on every run, and the plan either database makes
    without the value reads rows the index would have passed over."""
    for n in range(30):
        echo.enqueue(f"word {n}")
    DBTaskResult.objects.update(status="SUCCESSFUL")
    echo.enqueue("ready")
    plan = claim_plan()
    assert "tasks_db_new_ordering_idx" in plan, plan
    assert claim().args_kwargs["args"] == ["ready"]
    assert claim() is None


def test_a_close_marks_a_running_row_successful_but_never_one_the_reaper_closed(db):
    echo.enqueue("a")
    echo.enqueue("b")
    running, reaped = claim(), claim()
    DBTaskResult.objects.filter(pk=reaped.pk).update(status="FAILED", exception_class_path="x.RunLost")
    with transaction.atomic():
        assert task_rows.close_successful(task_row=running) is True
        assert task_rows.close_successful(task_row=reaped) is False
    running.refresh_from_db()
    reaped.refresh_from_db()
    assert (running.status, running.return_value, running.traceback) == ("SUCCESSFUL", None, "")
    assert running.finished_at >= running.started_at
    assert (reaped.status, reaped.exception_class_path, reaped.finished_at) == ("FAILED", "x.RunLost", None)


@pytest.mark.django_db(transaction=True)
def test_the_loop_runs_jobs_to_their_end_and_other_tasks_through_the_library(company):
    done, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 2, "delayMs": 0})
    cancelled, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 2, "delayMs": 0})
    services.job_cancel(job=cancelled)  # before any worker took its run
    echo.enqueue("hello")

    loop = run_loop("loop-7")

    assert loop._run_tasks == 3
    done.refresh_from_db()
    assert (done.status, done.attempt, done.worker_id, done.progress) == (S.DONE, 1, "loop-7", 100.0)
    assert list(JobEvent.objects.filter(job=done).order_by("seq").values_list("type", flat=True)) == [
        "content_job.status", "content_job.running", "content_job.progress", "content_job.progress",
        "content_job.done"]
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.attempt) == (S.CANCELLED, 0)
    rows = {row.args_kwargs["args"][0]: row for row in DBTaskResult.objects.all()}
    assert {arg: (row.status, row.worker_ids) for arg, row in rows.items()} == {
        str(done.pk): ("SUCCESSFUL", ["loop-7"]),
        str(cancelled.pk): ("SUCCESSFUL", ["loop-7"]),
        "hello": ("SUCCESSFUL", ["loop-7"]),
    }
    assert rows["hello"].return_value == "HELLO"


@pytest.mark.django_db(transaction=True)
def test_a_loop_that_dies_while_starting_a_job_leaves_its_run_ready_for_the_next(company, monkeypatch):
    """The claim and the job's start are one transaction: a worker that stops between them
    (here: an error in the start) has claimed nothing, and the next worker runs the job."""
    job, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 1, "delayMs": 0})

    started = services.job_started

    def broken_start(**kwargs):  # after the start's UPDATE (on PostgreSQL, the claim's statement)
        started(**kwargs)
        raise RuntimeError("the worker died here")

    with monkeypatch.context() as patch:
        patch.setattr(services, "job_started", broken_start)
        with pytest.raises(RuntimeError):
            run_loop("loop-dead")
    job.refresh_from_db()
    (row,) = DBTaskResult.objects.all()
    assert (job.status, job.attempt, row.status, row.worker_ids) == (S.QUEUED, 0, "READY", [])
    assert list(JobEvent.objects.filter(job=job).values_list("type", flat=True)) == ["content_job.status"]

    run_loop("loop-next")
    job.refresh_from_db()
    row.refresh_from_db()
    assert (job.status, job.attempt, job.worker_id) == (S.DONE, 1, "loop-next")
    assert (row.status, row.worker_ids) == ("SUCCESSFUL", ["loop-next"])


def told(jobs: list[ContentJob], job_id, event: JobEvent) -> tuple[int, str]:
    """Which of `jobs` an event is of, by its place in the list, and what it says ("running")."""
    return [job.pk for job in jobs].index(job_id), event.type.split(".")[1]


@pytest.mark.django_db(transaction=True)
def test_a_busy_loop_commits_once_a_job_each_end_with_the_next_start(company, monkeypatch):
    jobs = [services.job_submit(company=company, job_type="test.quiet", params={})[0] for _ in range(3)]
    commits, heard = [], []
    commit = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: (commits.append(list(heard)), commit()))

    def hear(sender, job_id, event, **kwargs):  # sent on commit: what each commit published
        heard.append(told(jobs, job_id, event))

    job_changed.connect(hear)
    try:
        run_loop("loop-busy")
    finally:
        job_changed.disconnect(hear)

    # One commit starts the first job; each next one ends a job and starts the next; the last
    # ends the last and finds nothing to claim: four commits for three jobs, not seven.
    assert len(commits) == 4
    assert heard == [(0, "running"), (0, "done"), (1, "running"), (1, "done"), (2, "running"), (2, "done")]
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.attempt, job.result, job.worker_id) == (S.DONE, 1, {"ran": True}, "loop-busy")
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


@pytest.mark.django_db(transaction=True)
def test_a_busy_loop_takes_the_companys_event_counter_once_a_commit_right_before_it(company, monkeypatch):
    """Every worker's events take the company's event counter, whose row stays locked until
    commit: a run's end and the next job's start store their events together, as the last
    thing before the commit, not the end's event first with the writes of the next start
    behind it. The company stream's numbers keep the events' order."""
    jobs = [services.job_submit(company=company, job_type="test.quiet", params={})[0] for _ in range(3)]
    counter, stored = f'UPDATE "{Company._meta.db_table}"', f'INTO "{JobEvent._meta.db_table}"'
    marks = []
    with CaptureQueriesContext(connection) as queries:
        commit = connection.commit
        monkeypatch.setattr(connection, "commit", lambda: (marks.append(len(queries.captured_queries)), commit()))
        run_loop("loop-counter")

    assert len(marks) == 4
    begun = 0
    for mark in marks:
        statements = [q["sql"] for q in queries.captured_queries[begun:mark]]
        taken = [i for i, sql in enumerate(statements) if counter in sql]
        assert len(taken) == 1, statements
        # After the counter, nothing but the events' insert (on PostgreSQL the same statement).
        assert all(stored in sql for sql in statements[taken[0] + 1:]), statements
        begun = mark
    events = JobEvent.objects.filter(company=company).order_by("company_seq")
    assert [e.company_seq for e in events] == list(range(1, 10))
    assert [told(jobs, e.job_id, e) for e in events] == [
        (0, "status"), (1, "status"), (2, "status"),
        (0, "running"), (0, "done"), (1, "running"), (1, "done"), (2, "running"), (2, "done"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_next_start_fails_is_ended_all_the_same(company, monkeypatch):
    """The end of a run shares its transaction with the next start; when that start fails,
    the end is written alone and the run's row closed, and the failure goes on as before."""
    first, _ = services.job_submit(company=company, job_type="test.quiet", params={})
    second, _ = services.job_submit(company=company, job_type="test.quiet", params={})
    job_started = services.job_started

    def broken_start(*, job):  # after the start's UPDATE (on PostgreSQL, the claim's statement)
        started = job_started(job=job)
        if started.pk == second.pk:
            raise RuntimeError("the worker died here")
        return started

    with monkeypatch.context() as patch:
        patch.setattr(services, "job_started", broken_start)
        with pytest.raises(RuntimeError):
            run_loop("loop-dead")
    first.refresh_from_db()
    second.refresh_from_db()
    rows = {row.args_kwargs["args"][0]: row for row in DBTaskResult.objects.all()}
    assert (first.status, first.result, rows[str(first.pk)].status) == (S.DONE, {"ran": True}, "SUCCESSFUL")
    assert list(JobEvent.objects.filter(job=first).order_by("seq").values_list("type", flat=True)) == [
        "content_job.status", "content_job.running", "content_job.done"]
    assert (second.status, second.attempt, rows[str(second.pk)].status) == (S.QUEUED, 0, "READY")

    run_loop("loop-next")
    second.refresh_from_db()
    assert (second.status, second.worker_id) == (S.DONE, "loop-next")


@pytest.mark.django_db(transaction=True)
def test_a_run_overtaken_as_it_ends_writes_nothing_and_the_loop_goes_on(company):
    lost, _ = services.job_submit(company=company, job_type="test.overtaken", params={})
    after, _ = services.job_submit(company=company, job_type="test.quiet", params={})

    run_loop("loop-3")

    lost.refresh_from_db()
    after.refresh_from_db()
    assert (lost.status, lost.attempt, lost.result) == (S.RUNNING, 2, None)  # the second attempt's
    assert list(JobEvent.objects.filter(job=lost).values_list("type", flat=True)) == [
        "content_job.status", "content_job.running"]
    rows = {row.args_kwargs["args"][0]: row for row in DBTaskResult.objects.all()}
    assert (rows[str(lost.pk)].status, rows[str(lost.pk)].exception_class_path) == (
        "FAILED", "content_jobs.errors.LeaseLost")
    assert (after.status, rows[str(after.pk)].status) == (S.DONE, "SUCCESSFUL")


@pytest.mark.django_db(transaction=True)
def test_a_runs_lease_is_renewed_until_its_end_is_written(company, settings, monkeypatch):
    """The end waits for the worker's next transaction: the lease is held until then, so a
    reaper meanwhile does not take the job back."""
    settings.NEXUS_HEARTBEAT_SECONDS = 0.1
    settings.NEXUS_LEASE_SECONDS = 0.6
    job, _ = services.job_submit(company=company, job_type="test.quiet", params={})
    reaped = []

    def slow_between_runs():  # the time from the handler's return to the write of its end
        time.sleep(1.5)
        reaped.extend(services.jobs_reap())

    monkeypatch.setattr(worker_module, "close_old_connections", slow_between_runs)
    run_loop("loop-slow")
    job.refresh_from_db()
    assert reaped == []
    assert (job.status, job.attempt, job.result) == (S.DONE, 1, {"ran": True})


@pytest.mark.django_db(transaction=True)
def test_a_run_row_that_names_no_job_fails_through_the_library_and_the_queue_goes_on(company):
    from content_jobs.tasks import run_content_job

    run_content_job.enqueue("not-a-job-id")  # a row written by hand, say
    job, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 1, "delayMs": 0})

    run_loop()

    bad = DBTaskResult.objects.get(args_kwargs__args__0="not-a-job-id")
    assert (bad.status, bad.exception_class_path) == ("FAILED", "django.core.exceptions.ValidationError")
    assert "not-a-job-id" in bad.traceback
    job.refresh_from_db()
    assert job.status == S.DONE


@pytest.mark.django_db(transaction=True)
def test_a_run_naming_its_job_in_another_text_still_runs_it(company):
    """A run's job id as uuid.UUID reads it but not as the run's enqueue writes it: the loop
    starts that job all the same (on PostgreSQL not in the claim's statement, but after it)."""
    from content_jobs.tasks import run_content_job

    job = ContentJob.objects.create(company=company, job_type="test.quiet", params={}, created_at=timezone.now(),
                                    updated_at=timezone.now())
    run_content_job.enqueue(str(job.pk).upper())

    run_loop("loop-text")

    job.refresh_from_db()
    (row,) = DBTaskResult.objects.all()
    assert (job.status, job.attempt, job.worker_id, job.result) == (S.DONE, 1, "loop-text", {"ran": True})
    assert (row.status, row.worker_ids) == ("SUCCESSFUL", ["loop-text"])


@pytest.mark.django_db(transaction=True)
def test_the_run_of_a_job_cancelled_while_queued_is_closed_and_starts_nothing(company):
    cancelled, _ = services.job_submit(company=company, job_type="test.quiet", params={})
    services.job_cancel(job=cancelled)
    after, _ = services.job_submit(company=company, job_type="test.quiet", params={})

    run_loop("loop-cancelled")

    cancelled.refresh_from_db()
    after.refresh_from_db()
    rows = {row.args_kwargs["args"][0]: row for row in DBTaskResult.objects.all()}
    assert (cancelled.status, cancelled.attempt, cancelled.started_at) == (S.CANCELLED, 0, None)
    assert list(JobEvent.objects.filter(job=cancelled).order_by("seq").values_list("type", flat=True)) == [
        "content_job.status", "content_job.cancelled"]
    assert (rows[str(cancelled.pk)].status, rows[str(after.pk)].status) == ("SUCCESSFUL", "SUCCESSFUL")
    assert (after.status, after.attempt) == (S.DONE, 1)


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_busy_loop_sends_two_statements_a_job(company):
    """A busy worker's transaction on PostgreSQL: one statement that writes the run's end,
    closes its row, claims the next and starts that job, then both jobs' events (round trips
    were most of a job's time there)."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    jobs = [services.job_submit(company=company, job_type="test.quiet", params={})[0] for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        run_loop("loop-statements")

    transactions, current = [], None
    for sql in (q["sql"] for q in queries.captured_queries):
        if sql == "BEGIN":
            current = []
        elif sql == "COMMIT":
            transactions.append(current)
        else:
            current.append(sql.split(" ", 3)[:3])
    job_table, task_table = f'"{ContentJob._meta.db_table}"', f'"{DBTaskResult._meta.db_table}"'
    claim = ["WITH", "closed", "AS"]
    end_and_claim = ["WITH", "ended", "AS"]
    events = ["WITH", "counted", "AS"]
    assert transactions == [[claim, events], [end_and_claim, events], [end_and_claim, events], [end_and_claim, events]]
    assert all(job_table in sql and task_table in sql for sql in (q["sql"] for q in queries.captured_queries)
               if sql.startswith("WITH ended AS"))
    assert task_table in queries.captured_queries[1]["sql"]
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.worker_id) == (S.DONE, "loop-statements")
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


@pytest.mark.django_db(transaction=True)
def test_the_librarys_own_db_worker_still_runs_jobs_as_the_spec_allows(company):
    """The architecture lets `db_worker` processes run jobs at scale: its loop, not RunLoop's,
    takes the same rows and runs them through the run task."""
    import logging
    import signal

    from django.core.management import call_command

    job, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 2, "delayMs": 0})
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    loggers = [logging.getLogger(name) for name in ("django_tasks", "django_tasks_db")]
    saved_levels = [logger.level for logger in loggers]
    try:  # the command installs signal handlers and sets its loggers' levels: both are put back
        call_command("db_worker", "--batch", "--queue-name", "*", "--no-startup-delay", "--worker-id", "library",
                     verbosity=0)
    finally:
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        for logger, level in zip(loggers, saved_levels):
            logger.setLevel(level)
    job.refresh_from_db()
    (row,) = DBTaskResult.objects.all()
    assert (job.status, job.attempt, job.worker_id) == (S.DONE, 1, "library")
    assert (row.status, row.worker_ids) == ("SUCCESSFUL", ["library"])
