"""The run task: what the task backend executes for a job."""
from django_tasks import TaskContext, task

from . import runner


@task(takes_context=True)
def run_content_job(context: TaskContext, job_id: str) -> None:
    """Load the job by id and run it; a job that is no longer queued is skipped, and a run that
    lost its job's lease fails (content_jobs.errors.LeaseLost)."""
    worker_ids = context.task_result.worker_ids
    runner.run_job(job_id, worker_id=worker_ids[-1] if worker_ids else "")
