"""/health in the seed's shape; 503 when a critical dependency stops."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from controlplane.models import Heartbeat

pytestmark = pytest.mark.django_db


def test_health_has_the_seed_shape_and_is_200_when_healthy() -> None:
    Heartbeat.objects.create(name="worker:w1@host", last_seen=timezone.now())
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy", body
    assert isinstance(body["uptime"], float)
    assert isinstance(body["timestamp"], int)
    assert set(body["checks"]) >= {"database", "cache", "broker", "workers", "disk", "memory"}
    assert body["checks"]["workers"]["alive"] == 1
    assert body["checks"]["database"]["status"] == "ok"


def test_missing_workers_degrade_but_do_not_fail_health() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["workers"]["status"] == "error"


def test_stopped_redis_makes_health_503(private_redis: Any) -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": private_redis.url}
    }
    # Django's setting_changed handler rebuilds the cache connections for CACHES.
    with override_settings(CACHES=caches):
        assert Client().get("/health").status_code == 200
        private_redis.stop()
        response = Client().get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["cache"]["status"] == "error"
    assert "Connection" in body["checks"]["cache"]["message"]


def test_liveness_touches_no_dependency(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


def test_metrics_exports_django_and_controlplane_series() -> None:
    Client().get("/health/live")
    text = Client().get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert "controlplane_celery_workers_alive" in text
    assert "controlplane_metrics_scrape_errors 0.0" in text
