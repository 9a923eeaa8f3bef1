"""predictkube's Prometheus auth (`authModes`, as KEDA's predictkube takes it from a TriggerAuthentication), against
Debian's real Prometheus behind an auth-checking reverse proxy on loopback; no credential in any error."""

from __future__ import annotations

from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scalers.predictkube import PredictKubeScaler
from tests.scalers._prometheus_server import PrometheusFixture
from tests.scalers.test_prometheus import prom  # noqa: F401 - the module's real Prometheus (`queue_depth` = 17)


def scaler(address: str, auth: dict[str, str], **metadata: str) -> PredictKubeScaler:
    built = build_scaler(
        "predictkube",
        {
            "predictHorizon": "10m",
            "historyTimeWindow": "1h",
            "prometheusAddress": address,
            "query": "queue_depth",
            "queryStep": "1m",
            "threshold": "5",
            **metadata,
        },
        ctx=TriggerContext(trigger_type="predictkube"),
        auth_params={"apiKey": "accepted-and-unused", **auth},
    )
    assert isinstance(built, PredictKubeScaler)
    return built


async def read(s: PredictKubeScaler) -> float:
    try:
        return (await s.get_metric_and_activity()).value
    finally:
        await s.close()


async def test_bearer_token_from_the_trigger_authentication_via_auth_proxy(prom: PrometheusFixture) -> None:  # noqa: F811
    proxy = prom.proxy(auth=("bearer", "tok-pk-1"))
    assert await read(scaler(proxy.url, {"authModes": "bearer", "bearerToken": "tok-pk-1"})) >= 17
    assert proxy.seen[-1].headers["Authorization"] == "Bearer tok-pk-1"
    query = dict(proxy.seen[-1].query)
    assert query["query"] == "queue_depth" and query["step"] == "60"  # the range query went through the proxy


async def test_auth_modes_in_the_trigger_metadata_as_in_keda_docs_via_auth_proxy(prom: PrometheusFixture) -> None:  # noqa: F811
    proxy = prom.proxy(auth=("bearer", "tok-pk-2"))
    assert await read(scaler(proxy.url, {"bearerToken": "tok-pk-2"}, authModes="bearer")) >= 17


async def test_basic_auth_via_auth_proxy(prom: PrometheusFixture) -> None:  # noqa: F811
    proxy = prom.proxy(auth=("basic", "pk", "pk-pw"))
    auth = {"authModes": "basic", "username": "pk", "password": "pk-pw"}
    assert await read(scaler(proxy.url, auth)) >= 17


async def test_a_refused_token_is_an_error_without_the_token_via_auth_proxy(prom: PrometheusFixture) -> None:  # noqa: F811
    proxy = prom.proxy(auth=("bearer", "right-token"))
    s = scaler(proxy.url, {"authModes": "bearer", "bearerToken": "wrong-token-xyz"})
    with pytest.raises(ScalerError, match="HTTP 401") as err:
        await read(s)
    assert "wrong-token-xyz" not in str(err.value)
    assert "wrong-token-xyz" not in repr(s.describe())


async def test_no_credentials_without_auth_modes_via_auth_proxy(prom: PrometheusFixture) -> None:  # noqa: F811
    proxy = prom.proxy(auth=("bearer", "tok-pk-3"))
    with pytest.raises(ScalerError, match="HTTP 401"):
        await read(scaler(proxy.url, {"bearerToken": "tok-pk-3"}))
    assert "Authorization" not in proxy.seen[-1].headers


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"authModes": "bearer"}, "missing auth parameter(s): bearerToken (authModes bearer)"),
        ({"authModes": "basic,bearer", "username": "u", "bearerToken": "tok-secret"}, "cannot be combined"),
        ({"authModes": "tls"}, "auth mode 'tls' is not supported; expected some of bearer, basic, custom"),
        ({"authModes": "custom", "customAuthHeader": "X-Token"}, "customAuthHeader and customAuthValue"),
    ],
)
def test_bad_auth_is_a_clear_error_without_secrets(auth: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler("http://127.0.0.1:9", auth)
    assert expected in str(err.value)
    assert "tok-secret" not in str(err.value)
