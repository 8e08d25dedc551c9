"""The local instance stand-in other suites rely on behaves as documented."""

from __future__ import annotations

import requests

from deployments.demo.instance_app import InstanceApp, InstanceProcess


def test_fail_rate_is_exact_and_deterministic() -> None:
    with InstanceApp(version="2.0.0", fail_rate=0.25) as app:
        codes = [requests.get(f"{app.url}/", timeout=5).status_code for _ in range(40)]
    assert codes.count(500) == 10
    assert codes[:4] == [200, 200, 200, 500]


def test_health_deploy_and_metrics_endpoints() -> None:
    with InstanceApp(version="1.0.0", slot="blue") as app:
        assert requests.get(f"{app.url}/health", timeout=5).json() == {
            "status": "healthy",
            "version": "1.0.0",
        }
        app.healthy = False
        assert requests.get(f"{app.url}/health", timeout=5).status_code == 503
        resp = requests.post(f"{app.url}/deploy", json={"release": {"version": "1.1.0"}}, timeout=5)
        assert resp.status_code == 202
        assert app.version == "1.1.0"
        assert app.deploys[0]["body"] == {"release": {"version": "1.1.0"}}
        assert requests.get(f"{app.url}/", timeout=5).text == "1.1.0\n"
        text = requests.get(f"{app.url}/metrics", timeout=5).text
    assert 'app_http_requests_total{code="200",version="1.1.0",slot="blue"} 1' in text


def test_runs_as_a_process_and_is_controllable() -> None:
    with InstanceProcess(version="2.0.0", fail_rate=1.0, slot="green") as proc:
        assert requests.get(f"{proc.url}/", timeout=5).status_code == 500
        proc.control(fail_rate=0.0, version="2.0.1")
        resp = requests.get(f"{proc.url}/", timeout=5)
        assert (resp.status_code, resp.text) == (200, "2.0.1\n")
    assert proc.proc.poll() is not None
