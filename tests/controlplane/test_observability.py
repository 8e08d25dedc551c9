"""Sentry is initialised with the Django and Celery integrations when SENTRY_DSN is set."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = (
    "import django; django.setup(); import sentry_sdk; c = sentry_sdk.get_client(); "
    "print(c.is_active(), sorted(k for k in c.integrations if k in ('django', 'celery')))"
)


def _probe(**env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    full.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sentry_is_on_with_django_and_celery_integrations_when_dsn_is_set() -> None:
    # A DSN on a closed loopback port: initialisation sends nothing.
    assert _probe(SENTRY_DSN="http://public@127.0.0.1:9/1") == "True ['celery', 'django']"


def test_sentry_is_off_without_dsn() -> None:
    assert _probe() == "False []"
