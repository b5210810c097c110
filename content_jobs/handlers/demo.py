"""demo.steps: a job for trying the system, demos and smoke tests."""
import time

from rest_framework import serializers

from ..registry import StrictParamsSerializer, register
from ..runner import JobFailed


class DemoStepsParams(StrictParamsSerializer):
    steps = serializers.IntegerField(min_value=1, max_value=10_000, default=5)
    delayMs = serializers.IntegerField(min_value=0, max_value=60_000, default=200)
    failAt = serializers.IntegerField(min_value=1, allow_null=True, default=None)


@register("demo.steps", params=DemoStepsParams, description="Counts through steps, logging and reporting each.")
def demo_steps(ctx) -> dict:
    steps = ctx.params["steps"]
    delay = ctx.params["delayMs"] / 1000
    fail_at = ctx.params["failAt"]
    for i in range(1, steps + 1):
        ctx.check_cancelled()
        if delay:
            time.sleep(delay)
        if fail_at == i:
            raise JobFailed(f"step {i}/{steps} failed (failAt={fail_at})", code="step_failed")
        ctx.log(f"step {i}/{steps}", "info")
        ctx.progress(i / steps * 100, stage=f"step {i}/{steps}")
    ctx.check_cancelled()
    ctx.log("finished", "success")
    return {"steps": steps}
