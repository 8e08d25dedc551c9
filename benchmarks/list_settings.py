"""Settings for ``benchmarks.deployments_list``: the project's, plus a bare baseline view and
throttles out of the way (the benchmark is one user sending thousands of requests)."""

from controlplane.settings import *  # noqa: F403
from controlplane.settings import REST_FRAMEWORK

ROOT_URLCONF = "benchmarks.list_urls"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"user": "1000000/min", "mutation": "1000000/min"},
}
DEBUG = False
