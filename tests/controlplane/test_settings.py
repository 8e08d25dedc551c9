"""Production settings fail loudly without secrets and pass ``check --deploy``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_KEY = "k" * 20 + "-Zq8#v1$Lm0@pR4!tY7&wE2^uI9*oA3(sD6)fG5_hJ"


def run_django(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    drop = ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_without_secret_key_is_improperly_configured() -> None:
    result = run_django("", CONTROLPLANE_ENV="production", ALLOWED_HOSTS="cp.example.com")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_secret_key_file_variant(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PRODUCTION_KEY)
    result = run_django(
        "from django.conf import settings; "
        f"print(settings.SECRET_KEY == open({str(secret)!r}).read(), settings.DEBUG)",
        CONTROLPLANE_ENV="production",
        SECRET_KEY_FILE=str(secret),
        ALLOWED_HOSTS="cp.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_check_deploy_is_clean_under_production_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(CONTROLPLANE_ENV="production", SECRET_KEY=PRODUCTION_KEY, ALLOWED_HOSTS="cp.example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("flag", ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_PRELOAD"])
def test_production_turns_on_secure_flags(flag: str) -> None:
    result = run_django(
        f"from django.conf import settings; print(settings.{flag})",
        CONTROLPLANE_ENV="production",
        SECRET_KEY=PRODUCTION_KEY,
        ALLOWED_HOSTS="cp.example.com",
    )
    assert result.stdout.strip() == "True", result.stderr
