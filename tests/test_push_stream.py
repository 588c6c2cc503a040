"""The push plane end to end over mTLS: a real grpc.aio server, real gateway-agent processes, PostgreSQL, Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from django.test import override_settings
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from gateways.grpc_server import ServerConfig
from gateways.models import GatewayInstance, InstanceResourceState, ResourceVersion
from gateways.services import publish_desired_state, register_resource, wait_for_acks
from tests.push_support import (
    DEFAULT_STATE,
    AgentProcess,
    Pki,
    ServerThread,
    agent_settings,
    cert_entry,
    placeholder_builders,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def state() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    """Desired state per (type, group name), served by builders registered for the test only."""
    with placeholder_builders():
        data: dict[tuple[str, str], dict[str, Any]] = {}
        for rtype, default in DEFAULT_STATE.items():
            register_resource(rtype, lambda g, t=rtype, d=default: data.get((t, g.name), d))
        yield data


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def server_factory(pki: Pki) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        cfg = ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca),
                           debounce_seconds=0.02, reconcile_seconds=30.0, hello_timeout=2.0)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        srv = ServerThread(cfg).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    yield procs
    for a in procs:
        a.stop()


def start_agent(agents: list[AgentProcess], tmp_path: Path, pki: Pki, port: int, name: str, group: str,
                **extra: Any) -> AgentProcess:
    a = AgentProcess(tmp_path / name, agent_settings(tmp_path / name, pki, port, name, group, **extra)).start()
    agents.append(a)
    return a


def desired(rtype: str, group: str) -> int | None:
    v = ResourceVersion.objects.filter(resource_type=rtype, group__name=group).order_by("-id").first()
    return v.pk if v else -1


def acked(instance: str, rtype: str) -> int | None:
    st = InstanceResourceState.objects.filter(instance__instance_id=instance, resource_type=rtype).first()
    return st.acked_version if st else None


def test_two_groups_converge_and_a_change_reaches_both(state, server_factory, agents, tmp_path, pki) -> None:
    srv = server_factory()
    entry_a, pem_a = cert_entry(["a.example.com"])
    state[("certificates", "default")] = {"certificates": [entry_a]}
    state[("certificates", "canary")] = {"certificates": [entry_a]}
    gw1 = start_agent(agents, tmp_path, pki, srv.port, "gw1", "default")
    gw2 = start_agent(agents, tmp_path, pki, srv.port, "gw2", "canary")
    for gw, group in ((gw1, "default"), (gw2, "canary")):
        wait_until(lambda gw=gw, group=group: all(
            gw.known().get(t) == desired(t, group) for t in DEFAULT_STATE), message=f"{gw.root.name} converged")
        assert (gw.root / "certs" / "a.example.com.crt").read_text() == pem_a
        assert (gw.root / "certs" / "a.example.com.key").stat().st_mode & 0o777 == 0o600
    inst = GatewayInstance.objects.get(instance_id="gw2")
    assert (inst.group.name, inst.connected, inst.client_identity, inst.agent_version) == ("canary", True, "gw2",
                                                                                          "0.1.0")
    wait_until(lambda: acked("gw1", "certificates") == desired("certificates", "default"), message="ack stored")

    # one change for every group reaches both; wait_for_acks sees both ACKs
    entry_b, pem_b = cert_entry(["b.example.com"])
    state[("certificates", "default")] = state[("certificates", "canary")] = {"certificates": [entry_b]}
    versions = publish_desired_state("certificates")
    assert len(versions) == 2 and len({v.pk for v in versions}) == 2  # groups get versions independently
    result = wait_for_acks(versions, timeout=10)
    assert result.ok and result.instances == 2 and not result.timed_out, result
    for gw in (gw1, gw2):
        assert (gw.root / "certs" / "b.example.com.crt").read_text() == pem_b
        assert not (gw.root / "certs" / "a.example.com.crt").exists()  # full state of the world
    # an unchanged state is a no-op: same versions, nothing sent
    assert [v.pk for v in publish_desired_state("certificates")] == [v.pk for v in versions]
    # a change for the canary group only leaves default alone
    state[("waf_rules", "canary")] = {"name": "waf-rules.yaml", "content": "rules: [canary]\n"}
    (v_canary,) = publish_desired_state("waf_rules", group=inst.group)
    assert wait_for_acks([v_canary], timeout=10).ok
    assert (gw2.root / "waf-rules.yaml").read_text() == "rules: [canary]\n"
    assert (gw1.root / "waf-rules.yaml").read_text() == "rules: []\n"
    # nobody was ever sent the same version twice
    for gw in (gw1, gw2):
        sent = [(e["type"], e["version"]) for e in gw.journal()]
        assert len(sent) == len(set(sent)), sent


def test_nack_parks_version_keeps_old_files_and_later_version_goes_through(state, server_factory, agents,
                                                                         tmp_path, pki) -> None:
    srv = server_factory(reconcile_seconds=0.3)
    flag = tmp_path / "reload-fails"
    gw = start_agent(agents, tmp_path, pki, srv.port, "gw-nack", "default",
                     reload_command=["sh", "-c", f"test ! -e {flag} || {{ echo reload broke >&2; exit 7; }}"])
    wait_until(lambda: gw.known().get("config") == desired("config", "default"), message="initial config")
    old = (gw.root / "gateway.yaml").read_text()

    flag.touch()
    state[("config", "default")] = {"name": "gateway.yaml", "content": "server: {port: 1}\n"}
    (bad,) = publish_desired_state("config")
    result = wait_for_acks([bad], timeout=10)
    assert not result.ok and "gw-nack" in result.rejected[bad.pk]
    assert "reload command exited 7: reload broke" in result.rejected[bad.pk]["gw-nack"]
    assert (gw.root / "gateway.yaml").read_text() == old  # previous files restored
    st = InstanceResourceState.objects.get(instance__instance_id="gw-nack", resource_type="config")
    assert st.rejected_version == bad.pk and "exited 7" in st.rejected_error and st.acked_version != bad.pk
    # parked: several reconcile rounds later it was still delivered exactly once
    srv.call(lambda: srv.running.hub.reconcile())
    import time
    time.sleep(1.0)
    assert [e["version"] for e in gw.journal() if e["type"] == "config"].count(bad.pk) == 1
    # and across a reconnect: the new stream is told nothing of the parked version (it runs the old one)
    gw.stop()
    wait_until(lambda: not GatewayInstance.objects.get(instance_id="gw-nack").connected, message="disconnected")
    gw.start()
    wait_until(lambda: GatewayInstance.objects.get(instance_id="gw-nack").connected, message="reconnected")
    time.sleep(1.0)
    assert [e["version"] for e in gw.journal() if e["type"] == "config"].count(bad.pk) == 1
    assert (gw.root / "gateway.yaml").read_text() == old

    flag.unlink()
    state[("config", "default")] = {"name": "gateway.yaml", "content": "server: {port: 2}\n"}
    (good,) = publish_desired_state("config")
    assert wait_for_acks([good], timeout=10).ok
    assert (gw.root / "gateway.yaml").read_text() == "server: {port: 2}\n"


def test_reconnect_after_three_changes_gets_only_the_latest(state, server_factory, agents, tmp_path, pki) -> None:
    srv = server_factory()
    gw = start_agent(agents, tmp_path, pki, srv.port, "gw-away", "default")
    wait_until(lambda: gw.known().get("waf_rules") == desired("waf_rules", "default"), message="initial")
    gw.stop()
    wait_until(lambda: not GatewayInstance.objects.get(instance_id="gw-away").connected, message="disconnect seen")
    published = []
    for i in range(3):
        state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": f"rules: [{i}]\n"}
        published += publish_desired_state("waf_rules")
    before = len(gw.journal())
    gw.start()
    wait_until(lambda: gw.known().get("waf_rules") == published[-1].pk, message="latest after reconnect")
    import time
    time.sleep(0.3)
    new = gw.journal()[before:]
    assert [(e["type"], e["version"]) for e in new] == [("waf_rules", published[-1].pk)]
    assert (gw.root / "waf-rules.yaml").read_text() == "rules: [2]\n"


def test_lost_redis_notice_is_delivered_by_reconcile(state, server_factory, agents, tmp_path, pki) -> None:
    srv = server_factory(reconcile_seconds=0.5)
    gw = start_agent(agents, tmp_path, pki, srv.port, "gw-lost", "default")
    wait_until(lambda: gw.known().get("waf_rules") == desired("waf_rules", "default"), message="initial")
    state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": "rules: [lost]\n"}
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens there: the notice is lost
        (v,) = publish_desired_state("waf_rules")
    assert wait_for_acks([v], timeout=10).ok
    assert (gw.root / "waf-rules.yaml").read_text() == "rules: [lost]\n"


def test_client_without_valid_certificate_is_refused(state, server_factory, pki, tmp_path) -> None:
    srv = server_factory()
    hello = pb.GatewayMessage(hello=pb.Hello(group="default"))
    # no client certificate
    with pki.channel(srv.port) as ch, pytest.raises(grpc.RpcError) as err:
        list(pb_grpc.PushServiceStub(ch).Stream(iter([hello]), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # a certificate from another CA
    other = Pki.create(tmp_path / "other")
    c, k, _ = other.client("intruder")
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch, pytest.raises(grpc.RpcError) as err:
        list(pb_grpc.PushServiceStub(ch).Stream(iter([hello]), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # a certificate from the right CA that was never registered as a credential
    c, k, _ = pki.client("unregistered", register=False)
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch, pytest.raises(grpc.RpcError) as err:
        list(pb_grpc.PushServiceStub(ch).Stream(iter([hello]), timeout=5))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a registered Gateway credential" in (err.value.details() or "")
    assert not GatewayInstance.objects.filter(instance_id__in=["intruder", "unregistered"]).exists()
    # a valid one is served
    with pki.channel(srv.port, "gw-ok") as ch:
        first = next(pb_grpc.PushServiceStub(ch).Stream(iter([hello]), timeout=5))
    assert first.WhichOneof("msg") == "welcome"


def test_hello_gets_exactly_what_differs_from_what_it_acked(state, server_factory, pki) -> None:
    """The Hello's versions are a hint: they spare a resend only where they match what this instance ACKed."""
    import asyncio

    from gateways.services import create_group

    srv = server_factory()
    group = create_group("edge", actor="tests")
    current = {t: publish_desired_state(t, group)[0].pk for t in DEFAULT_STATE}
    c, k, _ = pki.client("gw-diff", "edge")

    async def session(known: dict[str, int], ack: bool) -> list[tuple[str, int]]:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello(known_versions=known)))
            got: list[tuple[str, int]] = []
            try:
                while True:
                    msg = await asyncio.wait_for(call.read(), 1.0)
                    if msg.WhichOneof("msg") == "update":
                        got.append((msg.update.type, msg.update.version))
                        if ack:
                            await call.write(pb.GatewayMessage(ack=pb.Ack(
                                type=msg.update.type, version=msg.update.version, nonce=msg.update.nonce)))
            except TimeoutError:
                call.cancel()
            return got

    # claiming to run everything already (never ACKed): everything is sent anyway
    assert sorted(asyncio.run(session(current, ack=True))) == sorted(current.items())
    wait_until(lambda: all(acked("gw-diff", t) == v for t, v in current.items()), message="acks stored")
    # now it has ACKed them: a stale and a missing type are sent, the rest spared
    known = dict(current)
    known["waf_rules"] = current["waf_rules"] - 1000  # stale
    del known["config"]  # never had one
    got = asyncio.run(session(known, ack=False))
    assert sorted(got) == sorted([("config", current["config"]), ("waf_rules", current["waf_rules"])])


def test_concurrent_challenge_publishes_coalesce(state, server_factory, agents, tmp_path, pki) -> None:
    """The ACME hot path: many orders publish acme_challenges at once and each waits for the ACKs."""
    import threading

    from django.db import connection

    srv = server_factory(debounce_seconds=0.05)
    gw = start_agent(agents, tmp_path, pki, srv.port, "gw-acme", "default")
    wait_until(lambda: gw.known().get("acme_challenges") == desired("acme_challenges", "default"), message="up")
    tokens: list[dict[str, str]] = []
    lock = threading.Lock()
    state[("acme_challenges", "default")] = {"challenges": tokens}
    results: list[Any] = []

    def order(i: int) -> None:
        try:
            with lock:
                tokens.append({"domain": f"d{i}.test", "token": f"tok{i}", "key_authorization": f"tok{i}.k"})
            versions = publish_desired_state("acme_challenges")
            results.append((i, wait_for_acks(versions, timeout=15)))
        finally:
            connection.close()

    before = len([e for e in gw.journal() if e["type"] == "acme_challenges"])
    threads = [threading.Thread(target=order, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 20 and all(r.ok for _, r in results), results
    pushes = len([e for e in gw.journal() if e["type"] == "acme_challenges"]) - before
    assert 1 <= pushes < 20  # coalesced by the debounce: far fewer pushes than publishes
    assert sorted(p.name for p in (gw.root / "challenges").iterdir()) == sorted(f"tok{i}" for i in range(20))


def test_ack_for_a_superseded_version_keeps_the_stream(state, server_factory, pki) -> None:
    """A burst sends N+1 before the Gateway answers N: the late ACK of N is valid, not a protocol error."""
    import asyncio

    srv = server_factory(debounce_seconds=0.0)
    c, k, _ = pki.client("gw-burst")
    first_version = publish_desired_state("acme_challenges")[0].pk

    def publish_and_close(rtype: str) -> None:
        from django.db import connection

        try:
            publish_desired_state(rtype)
        finally:
            connection.close()  # this executor thread's connection would outlive the test database

    async def session() -> list[int]:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello(instance_id="gw-burst")))
            updates: list[pb.ResourceUpdate] = []
            while len(updates) < 2:
                msg = await asyncio.wait_for(call.read(), 5.0)
                if msg.WhichOneof("msg") != "update":
                    continue
                if msg.update.type != "acme_challenges":  # the other types: ACKed at once
                    await call.write(pb.GatewayMessage(ack=pb.Ack(type=msg.update.type, version=msg.update.version,
                                                                  nonce=msg.update.nonce)))
                    continue
                updates.append(msg.update)
                if len(updates) == 1:  # publish N+1 while N is unanswered
                    state[("acme_challenges", "default")] = {
                        "challenges": [{"domain": "a.test", "token": "tok-burst", "key_authorization": "tok-burst.k"}]}
                    await asyncio.to_thread(publish_and_close, "acme_challenges")
            for u in updates:  # answered in order, the older one last-minute
                await call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version, nonce=u.nonce)))
            await asyncio.sleep(0.5)
            assert not call.done(), "the server ended the stream on a late ACK"
            call.cancel()
            return [u.version for u in updates]

    versions = asyncio.run(session())
    assert versions[0] == first_version and versions[1] > first_version
    wait_until(lambda: acked("gw-burst", "acme_challenges") == versions[1], message="newest version recorded as ACKed")
