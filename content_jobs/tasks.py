"""The run task: what the task backend executes for a job."""
from django_tasks import task

from . import runner


@task()
def run_content_job(job_id: str) -> None:
    """Load the job by id and run it; a job that is no longer queued is skipped."""
    runner.run_job(job_id)
