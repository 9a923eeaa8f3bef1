"""InterceptorRoute (http.keda.sh/v1beta1): the add-on's fields and checks, its CRD, `ebb check`, and under
`ebb run` a route served by the ProcessGroup of the ScaledObject whose external-push trigger names it."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ebb.cli import app
from ebb.http.scaler import InterceptorScaler
from ebb.kube.crds import crd, structural_problems
from ebb.spec.loader import load_text
from ebb.spec.models import InterceptorRoute
from tests.runtime._support import eventually

from ._support import APP, free_ports, group, running
from .test_spec import _json_schema

# An InterceptorRoute and its ScaledObject as a user of the add-on writes them (every field of v1beta1).
ADDON_EXAMPLE = """\
apiVersion: http.keda.sh/v1beta1
kind: InterceptorRoute
metadata:
  name: web
spec:
  target:
    service: web
    port: 8080
  rules:
    - hosts: [web.example.com, "*.example.org"]
      paths: [{value: /api}]
      headers: [{name: X-Canary, value: "true"}, {name: X-Any}]
  scalingMetric:
    concurrency: {targetValue: 10}
    requestRate: {targetValue: 50, window: 30s}
  coldStart:
    fallback: {service: {name: fallback, port: 8081}}
    placeholder:
      response:
        statusCode: 503
        body: '{"status":"loading"}'
        headers: {Content-Type: application/json}
  timeouts: {readiness: 10s, request: 1m, responseHeader: 5s}
  staticRoutes:
    - rules: [{paths: [{value: /healthz}]}]
      response: {statusCode: 200, body: ok}
      responseMode: Always
    - rules: [{paths: [{value: /}]}]
      response: {bodyFromConfigMap: {name: pages, key: index.html}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web}
spec:
  scaleTargetRef: {name: web}
  minReplicaCount: 0
  triggers:
    - type: external-push
      metadata:
        scalerAddress: keda-add-ons-http-external-scaler.keda:9090
        interceptorRoute: web
"""


def _route(text: str) -> InterceptorRoute:
    loaded = load_text(text)
    assert loaded.errors == [], [str(e) for e in loaded.errors]
    [obj] = loaded.of(InterceptorRoute)
    return obj


def test_the_addons_example_is_accepted_unchanged_with_its_defaults() -> None:
    route = _route(ADDON_EXAMPLE)
    spec = route.spec
    assert spec.readiness_seconds == 10.0
    rate = spec.scaling_metric.request_rate
    assert rate is not None and rate.granularity == "1s" and rate.window_seconds == 30.0
    assert spec.static_routes[1].response_mode == "WhenUnavailable"
    assert spec.placeholder is not None and spec.placeholder.status_code == 503


MINIMAL = """\
apiVersion: http.keda.sh/v1beta1
kind: InterceptorRoute
metadata: {name: web}
spec:
  target: {service: web, port: 8080}
  scalingMetric: {concurrency: {targetValue: 100}}
"""


def test_readiness_with_a_fallback_defaults_to_30s_as_the_endpoint_resolver_does() -> None:
    assert _route(MINIMAL).spec.readiness_seconds is None
    with_fallback = MINIMAL + "  coldStart: {fallback: {service: {name: f, port: 1}}}\n"
    assert _route(with_fallback).spec.readiness_seconds == 30.0
    zero = with_fallback + "  timeouts: {readiness: 0s}\n"
    assert _route(zero).spec.readiness_seconds == 30.0
    assert _route(MINIMAL + "  timeouts: {readiness: 0s}\n").spec.readiness_seconds == 0.0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("  target: {service: web}\n", "spec.target", "exactly one of 'port' or 'portName' must be set"),
        ("  target: {service: web, port: 1, portName: http}\n", "spec.target", "exactly one of 'port'"),
        ("  target: {service: web, port: 70000}\n", "spec.target.port", "65535"),
        ("  scalingMetric: {}\n", "spec.scalingMetric", "at least one of 'concurrency' or 'requestRate'"),
        ("  scalingMetric: {concurrency: {targetValue: 0}}\n", "spec.scalingMetric.concurrency.targetValue", "1"),
        ("  coldStart: {}\n", "spec.coldStart", "at least one of 'fallback' or 'placeholder' must be set"),
        (
            "  coldStart: {placeholder: {response: {body: a, bodyFromConfigMap: {name: b}}}}\n",
            "spec.coldStart.placeholder.response",
            "at most one of 'body' or 'bodyFromConfigMap'",
        ),
        (
            "  coldStart: {placeholder: {response: {statusCode: 99}}}\n",
            "spec.coldStart.placeholder.response.statusCode",
            "100",
        ),
        (
            "  staticRoutes: [{rules: [], response: {}}]\n",
            "spec.staticRoutes[0].rules",
            "at least 1",
        ),
        (
            "  staticRoutes: [{rules: [{}], response: {}, responseMode: Sometimes}]\n",
            "spec.staticRoutes[0].responseMode",
            "Always",
        ),
        ("  rules: [{hosts: [a, a]}]\n", "spec.rules[0].hosts[1]", "duplicate host 'a'"),
        ("  rules: [{headers: [{name: X}, {name: X}]}]\n", "spec.rules[0].headers[1].name", "duplicate header"),
        ("  rules: [{paths: [{value: ''}]}]\n", "spec.rules[0].paths[0].value", "must not be empty"),
        ("  timeouts: {request: soon}\n", "spec.timeouts.request", "not a duration"),
    ],
)
def test_validation_names_the_field(change: str, field: str, message: str) -> None:
    lines = MINIMAL.splitlines(keepends=True)
    key = change.strip().split(":", 1)[0]
    text = "".join(line for line in lines if not line.strip().startswith(key + ":")) + change
    loaded = load_text(text)
    assert loaded.errors, text
    fields = [e.field for e in loaded.errors]
    assert field in fields, [str(e) for e in loaded.errors]
    assert any(message in e.message for e in loaded.errors if e.field == field), [str(e) for e in loaded.errors]


def test_crd_is_structural_carries_the_addons_rules_and_accepts_the_example() -> None:
    manifest = crd(InterceptorRoute)
    assert manifest["metadata"]["name"] == "interceptorroutes.http.keda.sh"
    assert manifest["spec"]["versions"][0]["name"] == "v1beta1"
    schema = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["target", "scalingMetric"]
    rules = {
        rule["rule"]
        for node in (spec["properties"]["target"], spec["properties"]["scalingMetric"], spec["properties"]["coldStart"])
        for rule in node["x-kubernetes-validations"]
    }
    assert rules == {
        "has(self.port) != has(self.portName)",
        "has(self.concurrency) || has(self.requestRate)",
        "has(self.fallback) || has(self.placeholder)",
    }
    assert spec["properties"]["rules"]["items"]["properties"]["hosts"]["x-kubernetes-list-type"] == "set"
    example = yaml.safe_load(ADDON_EXAMPLE.split("---")[0])
    jsonschema.validate(example["spec"], _json_schema(spec))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example["spec"], "scalingMetric": {"concurrency": {}}}, _json_schema(spec))


def test_ebb_check_shows_rules_metrics_cold_start_and_the_scaled_object(tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_text(ADDON_EXAMPLE)
    result = CliRunner().invoke(app, ["check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "InterceptorRoute default/web" in out
    assert "hosts web.example.com, *.example.org; paths /api; headers X-Canary=true, X-Any" in out
    assert "concurrency target 10; requestRate target 50 per 1s over 30s (the larger replica count wins)" in out
    assert "fallback           service fallback, port 8081, after 10s" in out
    assert "scaled by          ScaledObject default/web" in out


# --- under ebb run: real app processes behind the real interceptor --------------------------------------


def _route_docs(name: str, port: int, route_spec: str = "", so_spec: str = "", cooldown: int = 300) -> list[str]:
    route = textwrap.dedent(f"""\
        apiVersion: http.keda.sh/v1beta1
        kind: InterceptorRoute
        metadata: {{name: {name}}}
        spec:
          target: {{service: {name}, port: {port}}}
          rules: [{{hosts: [{name}.local]}}]
        """) + textwrap.indent(textwrap.dedent(route_spec), "  ")
    if "scalingMetric" not in route_spec:
        route += "  scalingMetric: {concurrency: {targetValue: 10}}\n"
    so = textwrap.dedent(f"""\
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {{name: {name}-so}}
        spec:
          scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: {name}}}
          minReplicaCount: 0
          maxReplicaCount: 4
          pollingInterval: 1
          cooldownPeriod: {cooldown}
          triggers:
            - type: external-push
              metadata: {{scalerAddress: "keda-add-ons-http-external-scaler.keda:9090", interceptorRoute: {name}}}
        """) + textwrap.indent(textwrap.dedent(so_spec), "  ")
    return [group(name), route, so]


async def _get(session: aiohttp.ClientSession, url: str, host: str, path: str = "/") -> tuple[int, str]:
    async with session.get(url + path, headers={"Host": host}) as response:
        return response.status, await response.text()


async def test_a_route_scales_its_scaled_objects_group_from_zero_and_back() -> None:
    port = free_ports(4)
    async with running(*_route_docs("web", port, cooldown=1)) as run:
        loop = next(loop for ref, loop in run.runtime.loops.items() if ref.name == "web-so")
        # Both metrics: one in-process reader each, named as the add-on's scaler names them.
        assert [type(s) for s in loop.scalers] == [InterceptorScaler]
        assert loop.scalers[0].metric_spec().name == "s0-http_web_concurrency"
        assert run.ready("web") == 0
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(_get(session, run.url, "web.local") for _ in range(10)))
        assert results == [(200, "hello from replica 0\n")] * 10
        await eventually(lambda: run.ready("web") == 0, within=15, what="back to zero after cooldownPeriod")
        assert "KEDAScaleTargetDeactivated" in run.recorder.reasons("web-so")


async def test_both_metrics_are_read_and_the_rate_is_not_rounded() -> None:
    port = free_ports(4)
    metric = "scalingMetric: {concurrency: {targetValue: 5}, requestRate: {targetValue: 3, window: 10s}}\n"
    async with running(*_route_docs("both", port, metric)) as run:
        loop = next(loop for ref, loop in run.runtime.loops.items() if ref.name == "both-so")
        names = [s.metric_spec().name for s in loop.scalers]
        assert names == ["s0-http_both_concurrency", "s0-http_both_rate"]
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await _get(session, run.url, "both.local")
        rate = loop.scalers[1]
        assert isinstance(rate, InterceptorScaler)
        value = rate.value()
        assert 0 < value <= 3  # 3 requests over the buckets seen so far, as a float


async def test_placeholder_answers_at_once_while_cold_and_still_scales_from_zero() -> None:
    port = free_ports(4)
    spec = """\
        coldStart:
          placeholder:
            response: {body: '{"status":"loading"}', headers: {Content-Type: application/json}}
        """
    async with running(*_route_docs("ph", port, spec)) as run, aiohttp.ClientSession() as session:
        async with session.get(run.url + "/", headers={"Host": "ph.local"}) as response:
            assert response.status == 503  # the add-on's default status for a placeholder
            assert await response.text() == '{"status":"loading"}'
            assert response.headers["Content-Type"] == "application/json"
            assert run.ready("ph") == 0  # answered at once, not held for the cold start
        # With the concurrency metric nothing stays in flight, yet the answered request asks for a replica.
        await eventually(lambda: run.ready("ph") == 1, within=15, what="scaled 0 -> 1 by a placeholder request")
        assert await _get(session, run.url, "ph.local") == (200, "hello from replica 0\n")


async def test_static_routes_answer_without_scaling_and_forward_when_a_replica_is_ready() -> None:
    port = free_ports(4)
    spec = """\
        staticRoutes:
          - rules: [{paths: [{value: /healthz}]}]
            response: {body: ok}
            responseMode: Always
          - rules: [{paths: [{value: /docs}]}, {headers: [{name: X-Static}]}]
            response: {bodyFromConfigMap: {name: pages}}
        """
    pages = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: pages, labels: {http.keda.sh/response-body: "true"}}
        data: {docs: "<h1>docs</h1>", index.html: home}
        """)
    async with running(*_route_docs("st", port, spec), pages) as run:
        route = next(iter(run.frontend.routes.values()))
        async with aiohttp.ClientSession() as session:
            assert await _get(session, run.url, "st.local", "/healthz") == (200, "ok")
            async with session.get(run.url + "/docs", headers={"Host": "st.local"}) as response:
                assert (response.status, await response.text()) == (200, "<h1>docs</h1>")
            async with session.get(run.url + "/", headers={"Host": "st.local", "X-Static": "1"}) as response:
                assert (response.status, await response.text()) == (200, "home")
                assert response.headers["Content-Type"] == "text/html"
            await asyncio.sleep(1.5)  # two polls: nothing was counted, nothing scaled
            assert route.requests == 0 and run.ready("st") == 0
            # An ordinary request scales it; then WhenUnavailable forwards, Always still answers itself.
            assert (await _get(session, run.url, "st.local"))[0] == 200
            assert (await _get(session, run.url, "st.local", "/docs"))[1] == "hello from replica 0\n"
            assert await _get(session, run.url, "st.local", "/healthz") == (200, "ok")
            assert route.requests == 1


async def test_request_timeout_gives_a_504_and_response_header_0s_disables_that_deadline() -> None:
    port = free_ports(4)
    spec = "timeouts: {request: 700ms, responseHeader: 0s}\n"
    async with running(*_route_docs("slow", port, spec, cooldown=300)) as run:
        async with aiohttp.ClientSession() as session:
            # The deadline covers the whole request, a cold start included (as the add-on's does).
            assert (await _get(session, run.url, "slow.local"))[0] in (200, 504)
            await eventually(lambda: run.ready("slow") == 1, within=15, what="warm")
            assert (await _get(session, run.url, "slow.local", "/sleep?s=0.1"))[0] == 200
            status, body = await _get(session, run.url, "slow.local", "/sleep?s=2")
        assert status == 504
        assert "InterceptorRoute default/slow: no response within the request timeout (0.7s)" in body
        route = next(iter(run.frontend.routes.values()))
        assert route.response_header is None and route.in_flight == 0


async def test_a_route_nothing_scales_gets_a_clear_503_and_a_problem() -> None:
    port = free_ports(2)
    route = _route_docs("lonely", port)[1]
    other = _route_docs("web", port + 1)
    async with running(*other, route) as run:
        async with aiohttp.ClientSession() as session:
            status, body = await _get(session, run.url, "lonely.local")
        assert status == 503
        assert "InterceptorRoute default/lonely: no ScaledObject scales it" in body
        assert any("no ScaledObject scales it" in message for _, message in run.recorder.problems)


def test_the_route_example_loads_and_pairs_its_scaled_object(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "http" / "route.yaml"
    result = CliRunner().invoke(app, ["check", str(example)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "external-push reads InterceptorRoute default/hello (ebb run: in process)" in result.output
    assert "scaled by          ScaledObject default/hello" in result.output


ROUTE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "http" / "route.yaml"


async def test_the_route_example_serves_its_placeholder_then_the_app() -> None:
    port = free_ports(4)
    text = (await asyncio.to_thread(ROUTE_EXAMPLE.read_text)).replace("port: 9180", f"port: {port}")
    command = f"command: [{sys.executable!r}, {str(APP)!r}]"
    text = text.replace("command: [.venv/bin/python, examples/http/app.py]", command)
    async with running(*text.split("---\n")) as run, aiohttp.ClientSession() as session:
        assert await _get(session, run.url, "hello.local", "/healthz") == (200, "ok\n")
        status, body = await _get(session, run.url, "hello.local")
        assert (status, body) == (503, "starting, try again in a second\n")
        await eventually(
            lambda: run.ready("hello") == 1, within=15, what="replica 0 started by the placeholder request"
        )
        assert await _get(session, run.url, "hello.local") == (200, "hello from replica 0\n")


STATIC_RULES = [
    # (rule, host, path, headers, matches): pkg/routing/match.go's semantics
    ({"hosts": ["a.example"]}, "a.example:8080", "/", {}, True),
    ({"hosts": ["*.example"]}, "x.y.example", "/", {}, True),
    ({"hosts": ["*.example"]}, "example", "/", {}, False),
    ({"hosts": ["*"]}, "anything", "/", {}, True),
    ({"paths": [{"value": "/api"}]}, "h", "/api/v1", {}, True),
    ({"paths": [{"value": "/api"}]}, "h", "/apix", {}, False),
    ({"paths": [{"value": "/"}]}, "h", "/anything", {}, True),
    ({"headers": [{"name": "X-A"}]}, "h", "/", {"x-a": ["1"]}, True),
    ({"headers": [{"name": "X-A", "value": "2"}]}, "h", "/", {"x-a": ["1"]}, False),
    ({"headers": [{"name": "X-A"}, {"name": "X-B"}]}, "h", "/", {"x-a": ["1"]}, False),
    ({}, "h", "/x", {}, True),
]


@pytest.mark.parametrize(("rule", "host", "path", "headers", "matches"), STATIC_RULES)
def test_static_route_rules_match_as_the_addon_does(
    rule: dict[str, object], host: str, path: str, headers: dict[str, list[str]], matches: bool
) -> None:
    from ebb.http.interceptor_route import rule_matches
    from ebb.spec.models import RoutingRule

    assert rule_matches(RoutingRule.model_validate(rule, strict=False), host, path, headers) is matches


async def test_an_interceptor_route_shadows_an_http_scaled_object_of_the_same_name() -> None:
    port = free_ports(4)
    shadowed = textwrap.dedent(f"""\
        apiVersion: http.keda.sh/v1alpha1
        kind: HTTPScaledObject
        metadata: {{name: web}}
        spec:
          hosts: [old.local]
          scaleTargetRef: {{name: other, kind: ProcessGroup, service: web, port: {port + 2}}}
        """)
    async with running(*_route_docs("web", port), group("other"), shadowed) as run:
        async with aiohttp.ClientSession() as session:
            assert (await _get(session, run.url, "old.local"))[0] == 404
        assert any("InterceptorRoute default/web takes precedence" in m for _, m in run.recorder.problems)
