"""Schemathesis fuzzes every endpoint with an operator token: no 500s, responses match the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.throttling import UserRateThrottle
from controlplane.tokens import token_create
from tests.conftest import make_user

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.mark.timeout(1200)
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "100000/min", "mutation": "100000/min"})
    _, key = token_create(user=make_user("fuzzer", "operator"), name="fuzz")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{live_server.url}/api/schema/",
            "--url",
            live_server.url,
            "--checks",
            CHECKS,
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            os.environ.get("FUZZ_MAX_EXAMPLES", "10"),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "1",
            "--workers",
            "1",
            "--no-color",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "all",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    (tmp_path.parent / "schemathesis.out").write_text(result.stdout + result.stderr)
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
