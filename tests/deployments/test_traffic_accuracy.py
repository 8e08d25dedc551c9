"""Traffic accuracy: the canary's share of real responses through nginx matches its weight."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployments.providers.base import TrafficTable
from tests.support.loadgen import LoadGenerator
from tests.support.nginx import NginxFleet, require_nginx

REQUESTS = 2000
TOLERANCE = 0.03  # 3 percentage points


@pytest.fixture(scope="module")
def fleet() -> Iterator[NginxFleet]:
    require_nginx()
    # Two stable instances and one canary: the slot's percent is split among its servers.
    with NginxFleet(blue=2, green=1) as f:
        yield f


@pytest.mark.parametrize("canary", [10, 50, 90])
def test_canary_share_of_responses_matches_the_configured_weight(fleet: NginxFleet, canary: int) -> None:
    fleet.router().apply(TrafficTable({"blue": 100 - canary, "green": canary}))

    result = LoadGenerator(fleet.nginx.url, threads=4).run(count=REQUESTS)

    assert result.sent == REQUESTS
    assert result.failed == 0, result.errors
    share = result.share("2.0.0")
    assert abs(share - canary / 100) <= TOLERANCE, f"canary got {share:.2%} at weight {canary}%"
    assert result.versions["1.0.0"] + result.versions["2.0.0"] == REQUESTS
