"""Helpers shared by the stream tests: submitting demo jobs to a live server and holding its worker."""
import httpx

from tests.live import LiveServer


def submit(api: httpx.Client, company_id: str, **params) -> dict:
    response = api.post(f"/api/companies/{company_id}/content-jobs", json={"jobType": "demo.steps", "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def cancel(api: httpx.Client, job: dict) -> httpx.Response:
    return api.post(f"/api/companies/{job['companyId']}/content-jobs/{job['jobId']}/cancel")


def hold_worker(server: LiveServer, api: httpx.Client) -> dict:
    """Keep the server's one embedded worker busy, so that jobs submitted meanwhile stay queued."""
    blocker = submit(api, server.company(), steps=10000, delayMs=50)
    server.wait_for_status(api, server.company(), blocker["jobId"], {"running"})
    return blocker


def release_worker(server: LiveServer, api: httpx.Client, blocker: dict) -> None:
    cancel(api, blocker)
    server.wait_for_status(api, server.company(), blocker["jobId"], {"cancelled"})


def release_once_watching(server: LiveServer, api: httpx.Client, blocker: dict, threads, ready, join_timeout: float):
    """Start the watcher threads, wait at `ready` (a barrier they reach once their streams are
    open), let the held worker go, and wait for the threads to end."""
    for thread in threads:
        thread.start()
    ready.wait()
    release_worker(server, api, blocker)
    for thread in threads:
        thread.join(join_timeout)
