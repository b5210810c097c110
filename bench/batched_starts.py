"""What starting jobs in batches would give: no-op jobs a second, and the worker's CPU a job,
in-process, for the worker's own loop and for a loop that starts up to k jobs in one
transaction (and ends them, with the next batch's start, in the next).

    .venv/bin/python bench/batched_starts.py                      # SQLite, a fresh database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/batched_starts.py                  # PostgreSQL, a fresh database

The batched loop is not the service's: it is the alternative the project decided against
(README, Decisions: jobs started together are shown running while they wait, and a batch of
claims holds jobs behind a long one). It is measured here so that what it would buy is a
figure, not a guess. It uses the worker's own claim, start, end and close (task_rows, runner),
one statement each, so only the transactions are shared: on SQLite k = 1 writes what the
worker's loop writes, in the same transactions (on PostgreSQL that loop makes the four one
statement). Each run submits N no-op jobs in one transaction (not timed), then
runs them all; the kinds alternate, reversed every other repeat. Prints a table.
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N = int(os.environ.get("N", "2000"))
REPEATS = int(os.environ.get("REPEATS", "4"))
SIZES = (1, 8, 32, 128)


def main() -> None:
    from tests.live import create_database, drop_database

    database = create_database("nexus_bench_batch") if os.environ.get("DATABASE_URL") else None
    with tempfile.TemporaryDirectory(prefix="nexus-batch-") as var_dir:
        os.environ.update({"DJANGO_SETTINGS_MODULE": "nexus_site.settings", "NEXUS_VAR_DIR": var_dir,
                           "NEXUS_JOB_TYPE_MODULES": "bench.jobtypes", "NEXUS_EMBEDDED_WORKER": "false"})
        os.environ.pop("REDIS_URL", None)
        if database:
            os.environ["DATABASE_URL"] = database
        try:
            measure()
        finally:
            if database:
                from django.db import connections

                connections.close_all()
                drop_database(database)


def measure() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from content_jobs import events, runner, services, task_rows
    from content_jobs.models import Company
    from content_jobs.worker import RunLoop, _job_id

    call_command("migrate", verbosity=0)
    company = Company.objects.create(slug="acme", name="Acme")

    def submit() -> None:
        if connection.vendor == "postgresql":  # as bench/run.py: each run from a vacuumed table
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        with transaction.atomic():
            for _ in range(N):
                services.job_submit(company=company, job_type="bench.noop", params={})

    def run_loop(_k: int) -> int:
        loop = RunLoop(queue_names=["*"], interval=0.02, batch=True, backend_name="default",
                       startup_delay=False, max_tasks=None, worker_id="bench", excluded_queue_names=[])
        loop.run()
        return loop._run_tasks

    def batched(k: int) -> int:
        ended, done = [], 0
        while True:
            with transaction.atomic(), events.stored_together(commit=True):
                for row, end in ended:
                    end()
                    task_rows.close_successful(task_row=row)
                ended, started = [], []
                for _ in range(k):
                    row = task_rows.claim_next(worker_id="bench", backend_name="default")
                    if row is None:
                        break
                    started.append((row, runner.start_job(_job_id(row), worker_id="bench")))
            if not started:
                return done
            for row, job in started:
                ended.append((row, runner.run_handler(job)))
                done += 1

    kinds = [("the worker's loop (RunLoop)", run_loop, 0)] + [(f"batched, k = {k}", batched, k) for k in SIZES]
    results: dict[str, list[tuple[float, float]]] = {}
    for repeat in range(REPEATS):
        for name, run, k in kinds if repeat % 2 == 0 else kinds[::-1]:
            submit()
            cpu, wall = time.process_time(), time.perf_counter()
            done = run(k)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if done != N:
                raise SystemExit(f"{name}: {done} of {N} jobs ran")
            results.setdefault(name, []).append((done / wall, cpu / done * 1000))

    def cell(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f} to {max(values):,.{digits}f})"

    base = statistics.median(rate for rate, _ in results[kinds[0][0]])
    print(f"\n{connection.vendor}, {N} no-op jobs a run, {REPEATS} runs each, median (min to max)\n")
    print("| loop | jobs a second | CPU ms a job | jobs a second against the worker's loop |")
    print("| --- | ---: | ---: | ---: |")
    for name, _, _ in kinds:
        rates, cpus = [r for r, _ in results[name]], [c for _, c in results[name]]
        print(f"| {name} | {cell(rates, 0)} | {cell(cpus, 3)} | {statistics.median(rates) / base:.2f}× |")


if __name__ == "__main__":
    main()
