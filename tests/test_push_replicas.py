"""Two run_grpc replicas, one fleet: real `manage.py run_grpc` processes sharing the test PostgreSQL and Redis.

A replica killed (SIGKILL) in the middle of a fan-out leaves its Gateways to reconnect to the other replica,
which must bring every one of them to the newest version (the Hello tells it what each runs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from gateways.models import GatewayInstance
from gateways.services import publish_desired_state, wait_for_acks
from tests.push_support import DEFAULT_STATE, GrpcProcess, Pki, placeholder_state

pytestmark = pytest.mark.django_db(transaction=True)

FLEET = 20


@pytest.fixture
def state() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    with placeholder_state() as data:
        yield data


def _publish(rtype: str) -> Any:
    from django.db import connection

    try:
        (v,) = publish_desired_state(rtype)
    finally:
        connection.close()  # this runs in an executor thread: its connection must not outlive the test database
    return v


class Fleet:
    """FLEET Gateways, each knowing both replicas (starting on i % 2), reconnecting to the other when a stream
    ends, and ACKing every update with the nonce it came with."""

    def __init__(self, pki: Pki, ports: list[int]) -> None:
        self.ports = ports
        self.creds = []
        for i in range(FLEET):
            c, k, _ = pki.client(f"gw-rep-{i}")
            self.creds.append(grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes()))
        self.on: dict[int, int] = {}                                   # gateway -> port of its live stream
        self.runs: list[dict[str, int]] = [{} for _ in range(FLEET)]  # type -> version ACKed
        self.acked_on: list[dict[int, int]] = [{} for _ in range(FLEET)]  # waf_rules version -> port it came from
        self.lost: list[tuple[int, int, str]] = []
        self.stop = False

    async def gateway(self, i: int) -> None:
        at = i % 2
        while not self.stop:
            port = self.ports[at]
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", self.creds[i]) as ch:
                call = pb_grpc.PushServiceStub(ch).Stream()
                try:
                    await call.write(pb.GatewayMessage(hello=pb.Hello(known_versions=self.runs[i])))
                    async for msg in call:
                        if msg.WhichOneof("msg") == "welcome":
                            self.on[i] = port
                            continue
                        u = msg.update
                        await call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version,
                                                                      nonce=u.nonce)))
                        self.runs[i][u.type] = u.version
                        if u.type == "waf_rules":
                            self.acked_on[i].setdefault(u.version, port)
                except grpc.aio.AioRpcError as exc:
                    if not self.stop:
                        self.lost.append((i, port, exc.code().name))
                finally:
                    self.on.pop(i, None)
            at = 1 - at  # the other replica
            await asyncio.sleep(0.1)

    def converged(self, version: int) -> bool:
        return all(r.get("waf_rules", 0) >= version for r in self.runs)


async def _until(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_replica_killed_mid_fan_out_its_gateways_reconverge_on_the_other(state, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    for rtype in DEFAULT_STATE:
        publish_desired_state(rtype)
    env = {"PUSH_RECONCILE_SECONDS": "30"}  # the reconcile must not be what delivers here
    a, b = GrpcProcess(pki, env).start(), GrpcProcess(pki, env).start()
    fleet = Fleet(pki, [a.port, b.port])
    report: dict[str, Any] = {}
    try:
        async def run() -> None:
            tasks = [asyncio.create_task(fleet.gateway(i)) for i in range(FLEET)]
            try:
                first = await asyncio.to_thread(_publish, "waf_rules")
                await _until(lambda: fleet.converged(first.pk) and len(fleet.on) == FLEET, 20, "the fleet on both")
                on_b = {i for i, p in fleet.on.items() if p == b.port}
                assert len(on_b) == FLEET // 2  # split between the replicas
                state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": "rules: [after-kill]\n"}
                v = await asyncio.to_thread(_publish, "waf_rules")
                # SIGKILL right after the publish, before B's fan-out of v is done (at 20 streams usually before it
                # starts; the benchmark kills later, mid-way through 5,000): no goodbye, no flush
                b.proc.kill()
                killed_at = time.monotonic()
                await _until(lambda: fleet.converged(v.pk), 15, "every Gateway on the newest version")
                report["seconds"] = time.monotonic() - killed_at
                await _until(lambda: len(fleet.on) == FLEET, 10, "every Gateway connected again")
                report.update(v=v, on_b=on_b, on=dict(fleet.on),
                              via_a={i for i in on_b if fleet.acked_on[i].get(v.pk) == a.port})
            finally:
                fleet.stop = True
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(run())
        v, on_b = report["v"], report["on_b"]
        # every Gateway of the dead replica lost its stream and now streams from the survivor
        assert {i for i, p, _code in fleet.lost if p == b.port} == on_b
        assert set(report["on"].values()) == {a.port}
        # the ones B had not reached before it died got the version from A (counted, not assumed)
        print(f"B's {len(on_b)} Gateways: {len(report['via_a'])} got v{v.pk} from A after the kill; "
              f"all converged {report['seconds']:.2f}s after it")
        assert all(fleet.acked_on[i].get(v.pk) in (a.port, b.port) for i in on_b)
        # the database agrees: every instance is connected through A and ACKed the version
        assert wait_for_acks([v], timeout=10).ok
        replicas = set(GatewayInstance.objects.filter(instance_id__startswith="gw-rep-")
                       .values_list("replica", flat=True))
        assert len(replicas) == 1 and f":{a.proc.pid}:" in replicas.pop()
    finally:
        a.stop()
        b.stop()


def test_a_real_agent_given_both_replicas_fails_over_when_its_replica_dies(state, tmp_path: Path) -> None:
    from tests.push_support import AgentProcess, agent_settings, wait_until

    pki = Pki.create(tmp_path / "pki")
    for rtype in DEFAULT_STATE:
        publish_desired_state(rtype)
    env = {"PUSH_RECONCILE_SECONDS": "30"}
    a, b = GrpcProcess(pki, env).start(), GrpcProcess(pki, env).start()
    settings = agent_settings(tmp_path / "edge", pki, a.port, "edge-replicas", "default",
                              server=f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}")
    agent = AgentProcess(tmp_path / "edge", settings).start()
    rules = Path(settings["rules_file"])
    try:
        state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": "rules: [before]\n"}
        first = publish_desired_state("waf_rules")[0]
        wait_until(lambda: agent.known().get("waf_rules") == first.pk, timeout=20, message="v1 through replica A")
        assert rules.read_text() == "rules: [before]\n"
        (row,) = GatewayInstance.objects.filter(instance_id="edge-replicas").values_list("replica", flat=True)
        assert f":{a.proc.pid}:" in row, "the first address is tried first"

        a.proc.kill()
        state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": "rules: [after]\n"}
        second = publish_desired_state("waf_rules")[0]
        wait_until(lambda: agent.known().get("waf_rules") == second.pk, timeout=20, message="v2 through replica B")
        assert rules.read_text() == "rules: [after]\n"
        assert wait_for_acks([second], timeout=10).ok
        (row,) = GatewayInstance.objects.filter(instance_id="edge-replicas").values_list("replica", flat=True)
        assert f":{b.proc.pid}:" in row
    finally:
        agent.stop()
        a.stop()
        b.stop()
