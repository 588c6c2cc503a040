"""A connection storm against a real `manage.py run_grpc`: Gateways that connect all at once wait in grpc's
backlog of calls not yet taken up (GRPC_MAX_PENDING_CALLS) instead of being refused with CANCELLED."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from gateways.services import publish_desired_state, register_resource
from tests.push_support import DEFAULT_STATE, GrpcProcess, Pki, placeholder_builders

pytestmark = pytest.mark.django_db(transaction=True)

STORM = 150


@pytest.fixture
def state() -> Iterator[None]:
    with placeholder_builders():
        for rtype, default in DEFAULT_STATE.items():
            register_resource(rtype, lambda g, d=default: d)
        yield


async def _storm(port: int, creds: list[grpc.ChannelCredentials]) -> dict[str, int]:
    """Every Gateway at once (no pacing): how each stream's first answer went."""
    async def one(c: grpc.ChannelCredentials) -> str:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", c) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            try:
                await call.write(pb.GatewayMessage(hello=pb.Hello()))
                first = await asyncio.wait_for(call.read(), 60)
                return "welcome" if first.WhichOneof("msg") == "welcome" else "other"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
    outcomes: dict[str, int] = {}
    for o in await asyncio.gather(*(one(c) for c in creds)):
        outcomes[o] = outcomes.get(o, 0) + 1
    return outcomes


def test_a_connection_storm_waits_in_the_backlog_instead_of_being_refused(state: Any, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    for rtype in DEFAULT_STATE:
        publish_desired_state(rtype)
    creds = []
    for i in range(STORM):
        c, k, _ = pki.client(f"gw-storm-{i}")
        creds.append(grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes()))
    seen = {}
    # no backlog at all: calls the event loop has not taken up yet are refused (what grpc's default of 1,000 did to
    # a 2,000-Gateway storm); then the default: every Gateway of the storm is served
    for label, env in (("no backlog", {"GRPC_MAX_PENDING_CALLS": "0"}), ("default", {})):
        proc = GrpcProcess(pki, env).start()
        try:
            seen[label] = asyncio.run(_storm(proc.port, creds))
        finally:
            proc.stop()
    print(seen)
    assert seen["no backlog"].get("CANCELLED", 0) > 0, seen
    assert seen["default"] == {"welcome": STORM}, seen
