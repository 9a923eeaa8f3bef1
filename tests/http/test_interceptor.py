"""The interceptor end to end: real app processes behind it, scaled by the real runtime and core."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.runtime._support import eventually

from ._support import free_ports, group, httpso, running


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, str, str]:
    async with session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text(), response.headers.get("X-Replica", "")


async def test_cold_start_holds_concurrent_requests_and_answers_them_all() -> None:
    port = free_ports(4)
    # Polled once at start, then only when pushed: the held requests themselves must wake the loop.
    spec = "hosts: [web.local]\nscaledownPeriod: 300\n"
    async with running(group("web"), httpso("web", port, spec=spec, polling=600)) as run:
        assert run.ready("web") == 0
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(_get(session, run.url + "/", headers={"Host": "web.local"}) for _ in range(25))
            )
        assert [status for status, _, _ in results] == [200] * 25
        assert all(body == "hello from replica 0\n" for _, body, _ in results)
        route = next(iter(run.frontend.routes.values()))
        assert route.cold_starts == 1
        assert route.in_flight == 0 and route.held == 0
        assert "KEDAScaleTargetActivated" in run.recorder.reasons("web")
        assert run.ready("web") == 1


async def test_scales_out_on_concurrency_and_balances_over_ready_replicas() -> None:
    port = free_ports(4)
    spec = "scalingMetric: {concurrency: {targetValue: 2}}\n"
    async with running(group("web"), httpso("web", port, spec=spec, min_replicas=1)) as run:
        await eventually(lambda: run.ready("web") == 1, what="min replica ready")
        async with aiohttp.ClientSession() as session:
            slow = [asyncio.create_task(_get(session, run.url + "/sleep?s=4")) for _ in range(6)]
            # 6 in flight / target 2 = 3 replicas
            await eventually(lambda: run.ready("web") == 3, within=30, what="scale out to 3")
            quick = await asyncio.gather(*(_get(session, run.url + "/") for _ in range(6)))
            done = await asyncio.gather(*slow)
        assert all(status == 200 for status, _, _ in [*quick, *done])
        # New requests went to the least loaded replicas: the two new ones had nothing in flight.
        assert {replica for _, _, replica in quick} & {"1", "2"}


async def test_scale_in_waits_for_requests_in_flight_before_stopping_replicas() -> None:
    port = free_ports(4)
    # A long polling interval: the loop polls once at start, then this test alone sets the replicas.
    async with running(group("web", grace=20), httpso("web", port, polling=600)) as run:
        target = next(iter(run.frontend.targets))
        await target.set_replicas(3)
        await eventually(lambda: run.ready("web") == 3, what="3 ready")
        async with aiohttp.ClientSession() as session:
            slow = [asyncio.create_task(_get(session, run.url + "/sleep?s=1.5")) for _ in range(9)]
            pool = target.pool
            await eventually(lambda: pool.in_flight(1) >= 2, what="requests on replicas 1 and 2")
            await target.set_replicas(1)
            # Draining replicas take no new requests, and stay up until theirs are answered.
            assert run.ready("web") == 1
            assert len(run.runtime.targets[("default", "web")].pids()) == 3
            quick = await asyncio.gather(*(_get(session, run.url + "/") for _ in range(5)))
            assert {replica for _, _, replica in quick} == {"0"}
            done = await asyncio.gather(*slow)
        assert [status for status, _, _ in done] == [200] * 9
        group_ = run.runtime.targets[("default", "web")]
        await eventually(lambda: len(group_.recent_exits()) == 2, what="replicas 1 and 2 stopped")
        assert group_.pids() and len(group_.pids()) == 1
        assert not any(e.killed for e in group_.recent_exits())


async def test_routes_by_host_longest_prefix_and_headers() -> None:
    a, b, c = free_ports(2), free_ports(2), free_ports(2)
    docs = [
        group("api"),
        group("v2"),
        group("beta"),
        httpso("api", a, spec="hosts: [shop.local]\npathPrefixes: [/api]\n", min_replicas=1),
        httpso("v2", b, spec="hosts: [shop.local]\npathPrefixes: [/api/v2]\n", min_replicas=1),
        httpso(
            "beta",
            c,
            spec="hosts: [shop.local]\npathPrefixes: [/api]\nheaders: [{name: X-Beta, value: 'yes'}]\n",
            min_replicas=1,
        ),
    ]
    async with running(*docs) as run:
        for name in ("api", "v2", "beta"):
            await eventually(lambda name=name: run.ready(name) == 1, what=f"{name} ready")  # type: ignore[misc]
        routes = {ref.name: route for ref, route in run.frontend.routes.items()}
        cases = [
            ("/api/items", {}, "api"),
            ("/api/v2/items", {}, "v2"),
            ("/api/v2", {"X-Beta": "yes"}, "v2"),  # the longest prefix wins before headers are looked at
            ("/api/items", {"X-Beta": "yes"}, "beta"),  # the route with matching headers first
            ("/api/items", {"X-Beta": "no"}, "api"),
            ("/apix", {}, None),  # prefixes match whole segments
            ("/other", {}, None),
        ]
        async with aiohttp.ClientSession() as session:
            for path, headers, expected in cases:
                before = {name: route.requests for name, route in routes.items()}
                async with session.get(run.url + path, headers={"Host": "shop.local:8080", **headers}) as r:
                    await r.read()
                    status = r.status
                after = {name: route.requests for name, route in routes.items()}
                served = [name for name in routes if after[name] != before[name]]
                assert served == ([expected] if expected else []), (path, headers)
                assert status == (200 if expected else 404), (path, headers)


async def test_bodies_stream_both_ways_and_forwarded_headers_are_set() -> None:
    port = free_ports(2)
    async with running(group("web"), httpso("web", port, min_replicas=1)) as run:
        await eventually(lambda: run.ready("web") == 1, what="ready")
        payload = b"x" * (3 * 1024 * 1024)

        async def body() -> object:
            for i in range(0, len(payload), 65536):
                yield payload[i : i + 65536]

        async with aiohttp.ClientSession() as session:
            async with session.post(run.url + "/echo", data=body()) as r:
                assert r.status == 200
                assert await r.read() == payload
            async with session.get(run.url + "/stream?n=4") as r:
                chunks = [chunk async for chunk in r.content.iter_any()]
                assert b"".join(chunks) == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
            async with session.get(run.url + "/headers", headers={"Host": "app.local", "Connection": "x-drop"}) as r:
                seen = (await r.text()).lower()
        assert "x-forwarded-for: 127.0.0.1" in seen
        assert "x-forwarded-host: app.local" in seen
        assert "x-forwarded-proto: http" in seen


async def test_condition_wait_gives_a_504_with_a_clear_body_and_failover_is_used_when_set() -> None:
    port = free_ports(2)
    # A replica that never listens: its start is slower than conditionWait.
    slow = group("slow", env="{name: APP_START_DELAY, value: '60'}")
    fallback = free_ports(1)
    docs = [
        slow,
        httpso("slow", port, spec="hosts: [slow.local]\ntimeouts: {conditionWait: 1s}\n"),
        group("fb"),
        httpso("fb", fallback, spec="hosts: [fb.local]\n", min_replicas=1),
        group("slow2", env="{name: APP_START_DELAY, value: '60'}"),
        httpso(
            "slow2",
            free_ports(2),
            spec="hosts: [slow2.local]\n"
            f"coldStartTimeoutFailoverRef: {{service: fb, port: {fallback}, timeoutSeconds: 1}}\n",
        ),
    ]
    async with running(*docs) as run:
        await eventually(lambda: run.ready("fb") == 1, what="fallback ready")
        async with aiohttp.ClientSession() as session:
            status, body, _ = await _get(session, run.url + "/", headers={"Host": "slow.local"})
            assert status == 504
            assert "no replica of ProcessGroup default/slow became ready within 1s" in body
            status, body, _ = await _get(session, run.url + "/", headers={"Host": "slow2.local"})
            assert status == 200 and body == "hello from replica 0\n"


async def test_bad_input_gets_a_clear_answer_and_crashes_nothing() -> None:
    port = free_ports(2)
    docs = [
        group("web"),
        httpso("web", port, spec="hosts: [web.local]\n", min_replicas=1),
        httpso("ghost", free_ports(1), spec="hosts: [ghost.local]\n"),
    ]
    async with running(*docs) as run:
        await eventually(lambda: run.ready("web") == 1, what="ready")
        assert any("ProcessGroup default/ghost is not loaded" in m for _, m in run.recorder.problems)
        host, port_ = "127.0.0.1", run.frontend.interceptor.bound_port  # type: ignore[union-attr]

        async def raw(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, port_)
            writer.write(data)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
            writer.close()
            return head

        assert b" 400 " in await raw(b"NOT HTTP AT ALL\r\n\r\n")
        huge = b"GET / HTTP/1.1\r\nHost: web.local\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert b" 431 " in await raw(huge)
        async with aiohttp.ClientSession() as session:
            status, body, _ = await _get(session, run.url + "/", headers={"Host": "ghost.local"})
            assert status == 503 and "ProcessGroup default/ghost is not loaded" in body
            status, body, _ = await _get(session, run.url + "/", headers={"Host": "nowhere.local"})
            assert status == 404 and "no HTTPScaledObject routes host 'nowhere.local'" in body
            # The interceptor still serves.
            status, body, _ = await _get(session, run.url + "/", headers={"Host": "web.local"})
            assert status == 200


async def test_a_client_that_disconnects_while_held_is_forgotten() -> None:
    port = free_ports(2)
    docs = [group("slow", env="{name: APP_START_DELAY, value: '60'}"), httpso("slow", port)]
    async with running(*docs) as run:
        route = next(iter(run.frontend.routes.values()))
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(_get(session, run.url + "/"))
            await eventually(lambda: route.held == 1, what="request held")
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
        await eventually(lambda: route.held == 0 and route.in_flight == 0, what="held request dropped")


@pytest.mark.parametrize("max_held", [2])
async def test_too_many_held_requests_get_a_503(max_held: int) -> None:
    port = free_ports(2)
    docs = [
        group("slow", env="{name: APP_START_DELAY, value: '60'}"),
        httpso("slow", port, spec="timeouts: {conditionWait: 2s}\n"),
    ]
    async with running(*docs, max_held=max_held) as run:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(_get(session, run.url + "/") for _ in range(4)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [503, 503, 504, 504]


async def test_traffic_across_repeated_scale_to_zero_loses_no_request() -> None:
    port = free_ports(2)
    spec = "scaledownPeriod: 1\n"
    async with running(group("web"), httpso("web", port, spec=spec, polling=0.2)) as run:
        route = next(iter(run.frontend.routes.values()))
        statuses: list[int] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                burst = await asyncio.gather(*(_get(session, run.url + "/sleep?s=0.2") for _ in range(10)))
                statuses += [status for status, _, _ in burst]
                await eventually(lambda: run.ready("web") == 0, what="back to zero")
            # Sparse requests, some arriving while the replica drains or stops: each is served or held.
            for gap in (0.9, 1.1, 1.3, 1.0, 1.2, 0.8, 1.4):
                statuses.append((await _get(session, run.url + "/"))[0])
                await asyncio.sleep(gap)
        assert statuses == [200] * len(statuses)
        assert route.cold_starts >= 3
        assert "KEDAScaleTargetDeactivated" in run.recorder.reasons("web")
