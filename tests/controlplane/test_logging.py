"""Logs are JSON lines that carry the request id."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.conf import settings
from django.test import Client


@pytest.mark.django_db
def test_log_lines_are_json_with_the_request_id() -> None:
    formatter_conf = settings.LOGGING["formatters"]["structured"]
    formatter = formatter_conf["()"](**{k: v for k, v in formatter_conf.items() if k != "()"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        Client().get("/api/v1/no-such-endpoint/", HTTP_X_REQUEST_ID="trace-42")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    assert lines, "expected a log line for the 404"
    assert lines[0]["request_id"] == "trace-42"
    assert lines[0]["level"] == "warning"
    assert "Not Found" in lines[0]["event"]
