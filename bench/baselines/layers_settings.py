"""The project as it ships, with three more endpoints (bench/baselines/layers_urls.py): the
submission's path cut off at each layer of the stack, to weigh what each layer costs a POST."""
from nexus_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.baselines.layers_urls"
NEXUS_EMBEDDED_WORKER = False
