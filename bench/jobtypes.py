"""Job types for the benchmarks (loaded with NEXUS_JOB_TYPE_MODULES=bench.jobtypes)."""
import time

from rest_framework import serializers

from content_jobs.registry import StrictParamsSerializer, register


class PulseParams(StrictParamsSerializer):
    count = serializers.IntegerField(min_value=1, max_value=100_000)
    intervalMs = serializers.FloatField(min_value=0, max_value=10_000)
    kind = serializers.ChoiceField(choices=["log", "progress"])
    startDelayMs = serializers.IntegerField(min_value=0, default=0)
    batch = serializers.IntegerField(min_value=1, max_value=1000, default=1)  # log lines per call


@register("bench.pulse", params=PulseParams, description="Emits timestamped log lines or stage changes.")
def pulse(ctx):
    """Each event carries the wall-clock time of the call, so a client can measure latency."""
    p = ctx.params
    time.sleep(p["startDelayMs"] / 1000)
    if p["kind"] == "log" and p["batch"] > 1:  # a burst written in chunks (ctx.log_lines)
        for start in range(0, p["count"], p["batch"]):
            ctx.log_lines([f"t={time.time():.6f} i={i}" for i in range(start, min(p["count"], start + p["batch"]))])
            if p["intervalMs"]:
                time.sleep(p["intervalMs"] / 1000)
        return {"count": p["count"]}
    for i in range(p["count"]):
        if p["kind"] == "log":
            ctx.log(f"t={time.time():.6f} i={i}")
        else:
            ctx.progress(i / p["count"] * 100, stage=f"t={time.time():.6f} i={i}")
        if p["intervalMs"]:
            time.sleep(p["intervalMs"] / 1000)
    return {"count": p["count"]}


class NoParams(StrictParamsSerializer):
    pass


@register("bench.noop", params=NoParams, description="Does nothing.")
def noop(ctx):
    return None


class SpinParams(StrictParamsSerializer):
    seconds = serializers.FloatField(min_value=0.1, max_value=60)
    rate = serializers.IntegerField(min_value=1, max_value=1_000_000)


@register("bench.spin", params=SpinParams, description="Calls progress() at a given rate without changing stage.")
def spin(ctx):
    end = time.monotonic() + ctx.params["seconds"]
    interval = 1 / ctx.params["rate"]
    calls = 0
    next_at = time.monotonic()
    while time.monotonic() < end:
        calls += 1
        ctx.progress(min(99.0, calls / (ctx.params["rate"] * ctx.params["seconds"]) * 100))
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return {"calls": calls}


class GateParams(StrictParamsSerializer):
    queued = serializers.IntegerField(min_value=1, max_value=100_000)
    thenMs = serializers.IntegerField(min_value=0, max_value=60_000, default=0)
    timeoutMs = serializers.IntegerField(min_value=1, max_value=600_000, default=120_000)


@register("bench.gate", params=GateParams, description="Holds its worker until jobs are queued behind it.")
def gate(ctx):
    """Waits until `queued` jobs of its company are queued, then `thenMs` more. The embedded
    worker runs one job at a time, so the jobs behind a gate start back to back once a client
    that submits them one by one has submitted them all: a figure over those jobs then measures
    them, not how fast the client submits."""
    from content_jobs.models import ContentJob

    waiting = ContentJob.objects.filter(company_id=ctx.job.company_id, status=ContentJob.Status.QUEUED)
    deadline = time.monotonic() + ctx.params["timeoutMs"] / 1000
    while waiting.count() < ctx.params["queued"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {ctx.params['queued']} jobs queued")
        time.sleep(0.01)
    time.sleep(ctx.params["thenMs"] / 1000)
    return {}
