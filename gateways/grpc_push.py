"""gateway_worker.v1.PushService: the Gateway push stream and its unary calls.

Who calls is decided by grpc_auth (the verified client certificate -> GatewayCredential) before any method here
runs: the instance id and group come from there; the ids and group a Gateway writes into its messages are only
checked against them (a mismatch is PERMISSION_DENIED naming it). Requests arrive parsed and size-checked;
responses are pre-serialized bytes shared by all streams of a group.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import grpc
from django.utils import timezone
from gateway_worker.v1 import gateway_worker_pb2 as pb

from . import intake, store
from .credentials import Identity
from .grpc_auth import StreamError, clip, current_identity, current_session
from .hub import Hub, StreamState, in_thread
from .models import DEFAULT_GROUP
from .resources import RESOURCE_TYPES

logger = logging.getLogger(__name__)

SERVICE = "gateway_worker.v1.PushService"
_GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def client_identity(context: grpc.aio.ServicerContext) -> str:
    auth = context.auth_context() or {}
    cn = auth.get("x509_common_name") or []
    return next(iter(cn)).decode(errors="replace")[:200] if cn else ""


def _check_type(rtype: str) -> None:
    if rtype not in RESOURCE_TYPES:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown resource type {clip(rtype)}; expected one of {sorted(RESOURCE_TYPES)}")


def _check_id(what: str, value: str) -> None:
    if value and not _ID_RE.match(value):
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{what} {clip(value)} must be 1-128 letters, digits, '.', '_', ':' and '-'")


def check_claims(ident: Identity | None, *, instance_id: str = "", group: str = "", what: str = "request") -> None:
    """A Gateway may repeat who it is; it may not claim to be someone else or to read another group."""
    _check_id(f"{what} instance id", instance_id)
    if group and not _GROUP_RE.match(group):
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{what} group {clip(group)} is not a slug (lowercase letters, digits, - and _)")
    if ident is None:
        return
    if instance_id and instance_id != ident.instance_id:
        raise StreamError(grpc.StatusCode.PERMISSION_DENIED,
                          f"{what} names instance {clip(instance_id)} but this client certificate was issued to "
                          f"{ident.instance_id!r}")
    if group and group != ident.group_name:
        raise StreamError(grpc.StatusCode.PERMISSION_DENIED,
                          f"{what} names group {clip(group)} but this client certificate belongs to group "
                          f"{ident.group_name!r} (a Gateway is moved between groups in the Worker's admin)")


class PushServicer:
    def __init__(self, hub: Hub, hello_timeout: float = 10.0) -> None:
        self.hub = hub
        self.hello_timeout = hello_timeout

    def handler(self) -> grpc.GenericRpcHandler:
        # Responses of Stream are pre-serialized bytes; requests are parsed by grpc_auth's wrapper.
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Stream": grpc.stream_stream_rpc_method_handler(
                self.stream, request_deserializer=pb.GatewayMessage.FromString,
                response_serializer=lambda b: b),
            "FetchResource": grpc.unary_unary_rpc_method_handler(
                self.fetch, request_deserializer=pb.FetchResourceRequest.FromString,
                response_serializer=pb.ResourceUpdate.SerializeToString),
            "ReportStatus": grpc.unary_unary_rpc_method_handler(
                self.report, request_deserializer=pb.StatusReport.FromString,
                response_serializer=pb.StatusReply.SerializeToString),
        })

    async def stream(self, requests: AsyncIterator[pb.GatewayMessage], context: grpc.aio.ServicerContext) -> None:
        st: StreamState | None = None
        try:
            try:
                first = await asyncio.wait_for(anext(requests, None), self.hello_timeout)
            except TimeoutError:
                raise StreamError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"no Hello within {self.hello_timeout:g}s; the first message must be Hello") from None
            if first is None:
                return
            if first.WhichOneof("msg") != "hello":
                raise StreamError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"the first message must be Hello, got {first.WhichOneof('msg') or 'nothing'}")
            st = await self._hello(first.hello, context)
            # Only the writer touches the call from here on (one send at a time, then the final status);
            # the reader and the hub hand it errors through the queue.
            reader = asyncio.create_task(self._read(st, requests))
            try:
                await self._write(st, context)
            finally:
                reader.cancel()
        finally:
            if st is not None and self.hub.detach(st):
                # recorded, not awaited: this task may be cancelled (client gone) and must not block here
                self.hub.record(store.Event("disconnect", st.instance_pk, "", 0, at=timezone.now()))

    async def _read(self, st: StreamState, requests: AsyncIterator[pb.GatewayMessage]) -> None:
        try:
            async for msg in requests:
                if msg.WhichOneof("msg") in ("logs", "security_events") and st.shipping is not None:
                    await st.shipping  # one log batch stored at a time per stream: its memory stays bounded
                self._handle(st, msg)
            st.queue.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # StreamError (bad message), or the call broke: let the writer end it
            st.queue.put_nowait(exc)

    async def _write(self, st: StreamState, context: grpc.aio.ServicerContext) -> None:
        while True:
            item = await st.queue.get()
            if item is None:
                return
            if isinstance(item, StreamError):
                raise item
            if isinstance(item, BaseException):
                raise StreamError(grpc.StatusCode.INTERNAL, f"stream failed: {type(item).__name__}")
            # grpc takes the message into its own buffers whether or not the Gateway reads: a Gateway that stopped
            # reading is found by its unanswered updates (Hub.check_slow_consumers), not by this write blocking
            await context.write(item)

    async def _hello(self, hello: pb.Hello, context: grpc.aio.ServicerContext) -> StreamState:
        ident = current_identity()
        check_claims(ident, instance_id=hello.instance_id, group=hello.group, what="Hello")
        known = dict(hello.known_versions)
        for rtype in known:
            _check_type(rtype)
        if ident is not None:
            instance_id, group_id = ident.instance_id, ident.group_id
        else:  # plaintext development mode: no certificate, so the Hello is all there is (the group must exist)
            if not hello.instance_id:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "Hello.instance_id is required without mTLS")
            group = await in_thread(store.group_by_name, hello.group or DEFAULT_GROUP)
            if group is None:
                raise StreamError(grpc.StatusCode.NOT_FOUND, f"no group {clip(hello.group)}; groups are created "
                                                             "in the Worker, not by a Gateway")
            instance_id, group_id = hello.instance_id, group.pk
        reg = await in_thread(store.register_hello, instance_id, group_id, hello.agent_version,
                              client_identity(context), context.peer(), self.hub.replica)
        st = StreamState(instance_id, reg.instance_pk, reg.group_id, reg.group_name, session=current_session())
        # The Hello's versions only spare a resend when they agree with what this instance ACKed (by nonce).
        st.known.update({t: v for t, v in known.items() if v and reg.acked.get(t) == v})
        st.parked.update(reg.parked)
        if st.session is not None:
            st.session.on_close = st.queue.put_nowait
        welcome = pb.WorkerMessage(welcome=pb.Welcome(replica=self.hub.replica, server_time=int(time.time())))
        st.queue.put_nowait(welcome.SerializeToString())
        self.hub.attach(st)
        await self.hub.initial_push(st)
        return st

    def _handle(self, st: StreamState, msg: pb.GatewayMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "ack":
            _check_type(msg.ack.type)
            err = self.hub.ack(st, msg.ack.type, msg.ack.version, msg.ack.nonce)
        elif kind == "nack":
            _check_type(msg.nack.type)
            err = self.hub.nack(st, msg.nack.type, msg.nack.version, msg.nack.nonce, msg.nack.error)
        elif kind == "hello":
            err = "Hello may be sent only once per stream"
        elif kind == "logs":
            err = None
            position = None
            if msg.logs.source:
                if not 0 <= msg.logs.offset_start <= msg.logs.offset_end:
                    raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "LogBatch offsets out of order")
                position = intake.LogPosition(msg.logs.source[:256], msg.logs.offset_start, msg.logs.offset_end)
            self._ship(st, [_v1_entry(e) for e in msg.logs.entries], position)
        elif kind == "security_events":
            err = None
            self._ship(st, [_v1_event(e) for e in msg.security_events.events])
        else:
            err = "empty GatewayMessage"
        if err:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, err)

    def _ship(self, st: StreamState, records: list[dict[str, Any]], position: intake.LogPosition | None = None
              ) -> None:
        """Hand a batch to the log pipeline (if one is installed), tagged with this stream's instance. One batch
        at a time per stream, in order: the reader waits for the previous one before it reads on. A batch with a
        position is answered with LogAck once stored (or found already stored)."""
        sink = intake.log_sink()
        if sink is None or (not records and position is None):
            return
        st.shipping = asyncio.ensure_future(_store_batch(sink, st, records, position))

    async def fetch(self, request: pb.FetchResourceRequest, context: grpc.aio.ServicerContext) -> Any:
        _check_type(request.type)
        ident = current_identity()
        check_claims(ident, instance_id=request.instance_id, group=request.group, what="FetchResourceRequest")
        if ident is not None:
            group_id, group_name = ident.group_id, ident.group_name
        else:
            group = await in_thread(store.group_by_name, request.group or DEFAULT_GROUP)
            if group is None:
                raise StreamError(grpc.StatusCode.NOT_FOUND, f"no group {clip(request.group)}")
            group_id, group_name = group.pk, group.name
        loaded = await in_thread(store.load_desired, [(request.type, group_id)], self.hub.nonce_prefix)
        if not loaded:
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"no desired {request.type} for group {group_name!r}")
        return pb.WorkerMessage.FromString(loaded[0].message_bytes).update

    async def report(self, request: pb.StatusReport, context: grpc.aio.ServicerContext) -> pb.StatusReply:
        ident = current_identity()
        check_claims(ident, instance_id=request.instance_id, what="StatusReport")
        instance_id = ident.instance_id if ident is not None else request.instance_id
        return pb.StatusReply(accepted=await in_thread(_touch, instance_id))


async def _store_batch(sink: Any, st: StreamState, records: list[dict[str, Any]],
                       position: intake.LogPosition | None = None) -> None:
    try:
        if position is None:
            await in_thread(sink, "grpc-stream", st.instance_id, records, "gateway-entry")
            return
        done = await in_thread(partial(sink, position=position), "grpc-stream", st.instance_id, records,
                               "gateway-entry")
    except Exception:  # not acknowledged: the sender resends from its last acknowledged offset
        logger.exception("log batch of %d entries from %s was not stored", len(records), st.instance_id)
        return
    ack = pb.LogAck(source=position.source, offset_end=done.offset_end,
                    stored=0 if done.duplicate else done.processed, malformed=done.errors)
    st.queue.put_nowait(pb.WorkerMessage(log_ack=ack).SerializeToString())


def _v1_entry(e: pb.LogEntry) -> dict[str, Any]:
    """v1 LogEntry -> the draft LogEntry's field names the pipeline's ``gateway-entry`` parser reads."""
    return {"timestamp": e.timestamp_ms, "level": e.level, "message": e.message, "source_ip": e.client_ip,
            "target_host": e.host, "method": e.method, "path": e.path, "status_code": e.status_code,
            "response_time_ms": e.response_time_ms, "bytes_sent": e.bytes_sent, "bytes_received": e.bytes_received,
            "user_agent": e.user_agent, "request_id": e.request_id, "metadata": dict(e.metadata)}


def _v1_event(e: pb.SecurityEvent) -> dict[str, Any]:
    """A security event as the pipeline's WAF line form (it is parsed into a security event there)."""
    return {"timestamp": e.timestamp_ms, "level": e.severity, "source_ip": e.client_ip,
            "message": f"WAF rule {e.rule_id} triggered: {e.description}" if e.rule_id else e.description,
            "request_id": e.request_id, "metadata": {"event_type": e.event_type, **dict(e.details)}}


def _touch(instance_id: str) -> bool:
    from .models import GatewayInstance
    return GatewayInstance.objects.filter(instance_id=instance_id).update(last_seen=timezone.now()) > 0
