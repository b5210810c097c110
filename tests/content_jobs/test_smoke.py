from tests.conftest import wait_for_job


def test_demo_job_runs_to_done_through_the_embedded_worker(api, jobs_url, worker):
    response = api.post(jobs_url, {"jobType": "demo.steps", "params": {"steps": 3, "delayMs": 0}}, format="json")
    assert response.status_code == 202
    job = wait_for_job(response.json()["jobId"])
    assert job.status == "done"
    assert job.result == {"steps": 3}
