"""gateway_worker.v1.PushService: the Gateway push stream and its unary calls.

Requests are parsed here (not by grpc's deserializer) so a malformed message gets INVALID_ARGUMENT with a
clear text; responses are pre-serialized bytes shared by all streams of a group.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from django.utils import timezone
from gateway_worker.v1 import gateway_worker_pb2 as pb
from google.protobuf.message import DecodeError

from . import metrics, pki, store
from .hub import Hub, StreamState, in_thread
from .resources import RESOURCE_TYPES

logger = logging.getLogger(__name__)

SERVICE = "gateway_worker.v1.PushService"
_GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StreamError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def client_fingerprint(context: grpc.aio.ServicerContext) -> str:
    auth = context.auth_context() or {}
    pem = auth.get("x509_pem_cert") or []
    return pki.fingerprint_of_pem(pem[0]) if pem else ""


def client_identity(context: grpc.aio.ServicerContext) -> str:
    auth = context.auth_context() or {}
    cn = auth.get("x509_common_name") or []
    return cn[0].decode() if cn else ""


def _parse(raw: bytes) -> pb.GatewayMessage:
    try:
        return pb.GatewayMessage.FromString(raw)
    except DecodeError as exc:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed GatewayMessage: {exc}") from None


def _check_type(rtype: str) -> None:
    if rtype not in RESOURCE_TYPES:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown resource type {rtype!r}; expected one of {sorted(RESOURCE_TYPES)}")


class PushServicer:
    def __init__(self, hub: Hub, hello_timeout: float = 10.0) -> None:
        self.hub = hub
        self.hello_timeout = hello_timeout

    def handler(self) -> grpc.GenericRpcHandler:
        ident = lambda b: b  # noqa: E731 - requests parsed in the handler, responses already bytes
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Stream": grpc.stream_stream_rpc_method_handler(self.stream, request_deserializer=ident,
                                                            response_serializer=ident),
            "FetchResource": grpc.unary_unary_rpc_method_handler(
                self.fetch, request_deserializer=pb.FetchResourceRequest.FromString,
                response_serializer=pb.ResourceUpdate.SerializeToString),
            "ReportStatus": grpc.unary_unary_rpc_method_handler(
                self.report, request_deserializer=pb.StatusReport.FromString,
                response_serializer=pb.StatusReply.SerializeToString),
        })

    async def stream(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        st: StreamState | None = None
        try:
            try:
                first = await asyncio.wait_for(context.read(), self.hello_timeout)
            except TimeoutError:
                raise StreamError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"no Hello within {self.hello_timeout:g}s; the first message must be Hello") from None
            if first is grpc.aio.EOF:
                return
            msg = _parse(first)
            if msg.WhichOneof("msg") != "hello":
                raise StreamError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"the first message must be Hello, got {msg.WhichOneof('msg') or 'nothing'}")
            st = await self._hello(msg.hello, context)
            # Only the writer touches the call from here on (one send at a time, then the final status);
            # the reader hands it errors through the queue.
            reader = asyncio.create_task(self._read(st, context))
            try:
                await self._write(st, context)
            finally:
                reader.cancel()
        except StreamError as exc:
            metrics.REJECTED_STREAMS.labels(exc.code.name).inc()
            await context.abort(exc.code, exc.details)
        finally:
            if st is not None and self.hub.detach(st):
                # recorded, not awaited: this task may be cancelled (client gone) and must not block here
                self.hub.record(store.Event("disconnect", st.instance_pk, "", 0, at=timezone.now()))

    async def _read(self, st: StreamState, context: grpc.aio.ServicerContext) -> None:
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    st.queue.put_nowait(None)
                    return
                self._handle(st, _parse(raw))
        except StreamError as exc:
            st.queue.put_nowait(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the message was larger than allowed: let the writer end the call
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
            await context.write(item)

    async def _hello(self, hello: pb.Hello, context: grpc.aio.ServicerContext) -> StreamState:
        if not hello.instance_id or len(hello.instance_id) > 128:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "Hello.instance_id must be 1-128 characters")
        group = hello.group or "default"
        if not _GROUP_RE.match(group):
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Hello.group {group!r} is not a slug (lowercase letters, digits, - and _)")
        known = dict(hello.known_versions)
        for rtype in known:
            _check_type(rtype)
        fingerprint = client_fingerprint(context)
        if fingerprint and await in_thread(store.is_revoked, fingerprint):
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, "client certificate revoked; issue a new one")
        reg = await in_thread(store.register_hello, hello.instance_id, group, hello.agent_version,
                              client_identity(context), context.peer(), self.hub.replica, known)
        st = StreamState(hello.instance_id, reg.instance_pk, reg.group_id, reg.group_name)
        st.known.update({t: v for t, v in known.items() if v})
        st.parked.update(reg.parked)
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
        elif kind in ("logs", "security_events"):
            err = None  # accepted and dropped until the log-pipeline work stores them
        else:
            err = "empty GatewayMessage"
        if err:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, err)

    async def fetch(self, request: pb.FetchResourceRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.type not in RESOURCE_TYPES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown resource type {request.type!r}")
        group_name = request.group or await in_thread(_instance_group, request.instance_id) or "default"
        group = await in_thread(store.group_by_name, group_name)
        if group is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no group {group_name!r}")
        loaded = await in_thread(store.load_desired, [(request.type, group.pk)], self.hub.nonce_prefix)
        if not loaded:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no desired {request.type} for group {group_name!r}")
        return pb.WorkerMessage.FromString(loaded[0].message_bytes).update

    async def report(self, request: pb.StatusReport, context: grpc.aio.ServicerContext) -> pb.StatusReply:
        return pb.StatusReply(accepted=await in_thread(_touch, request.instance_id))


def _instance_group(instance_id: str) -> str | None:
    from .models import GatewayInstance
    return GatewayInstance.objects.filter(instance_id=instance_id).values_list("group__name", flat=True).first()


def _touch(instance_id: str) -> bool:
    from django.utils import timezone

    from .models import GatewayInstance
    return GatewayInstance.objects.filter(instance_id=instance_id).update(last_seen=timezone.now()) > 0
