"""The Gateway's draft ``gateway_worker.GatewayWorkerService``, served from the same desired state.

Choices the draft leaves open are written down in proto/README.md: timestamps are unix seconds, checksums are
lowercase hex SHA-256 of ``config_data`` (UTF-8), config_version is our version number as a decimal string,
config types are ``waf`` (waf_rules), ``gateway`` (config) and ``emergency`` (emergency_rules, as JSON).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator

import grpc
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc
from gateway_worker.v1 import gateway_worker_pb2 as pb
from google.protobuf import json_format

from . import metrics, store
from .hub import Hub, in_thread

CONFIG_TYPES = {"waf": "waf_rules", "gateway": "config", "emergency": "emergency_rules",
                "waf_rules": "waf_rules", "config": "config", "emergency_rules": "emergency_rules"}
HEALTH_NAMES = {"", "gateway-worker", "gateway_worker.GatewayWorkerService"}


def _group_of(gateway_id: str, identity: str) -> int | None:
    from .models import GatewayGroup, GatewayInstance
    for filt in ({"instance_id": gateway_id} if gateway_id else None,
                 {"client_identity": identity} if identity else None):
        if filt:
            gid = GatewayInstance.objects.filter(**filt).values_list("group_id", flat=True).first()
            if gid:
                return int(gid)
    return GatewayGroup.objects.filter(name="default").values_list("id", flat=True).first()


def _update(lv: store.LoadedVersion) -> pb.ResourceUpdate:
    return pb.WorkerMessage.FromString(lv.message_bytes).update


def _config_data(u: pb.ResourceUpdate) -> str:
    if u.type == "emergency_rules":
        return json.dumps(json_format.MessageToDict(u.emergency_rules, preserving_proto_field_name=True),
                          sort_keys=True)
    return getattr(u, u.type).content


def _cert_fields(c: pb.Certificate, domain: str) -> dict[str, object]:
    return {"domain": domain, "certificate_pem": c.cert_pem, "private_key_pem": c.key_pem,
            "certificate_chain_pem": c.chain_pem, "expires_at": c.not_after, "is_temporary": c.temporary,
            "certificate_id": str(c.version_id or c.serial)}


def _matches(pattern: str, domain: str) -> bool:
    if pattern == domain:
        return True
    return pattern.startswith("*.") and domain.count(".") >= 2 and domain.split(".", 1)[1] == pattern[2:]


class DraftServicer(dgrpc.GatewayWorkerServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def register(self, server: grpc.aio.Server) -> None:
        dgrpc.add_GatewayWorkerServiceServicer_to_server(self, server)

    async def _load(self, rtype: str, group_id: int | None) -> store.LoadedVersion | None:
        if group_id is None:
            return None
        loaded = await in_thread(store.load_desired, [(rtype, group_id)], self.hub.nonce_prefix)
        return loaded[0] if loaded else None

    async def _group(self, gateway_id: str, context: grpc.aio.ServicerContext) -> int | None:
        from .grpc_push import client_identity
        return await in_thread(_group_of, gateway_id, client_identity(context))

    async def HealthCheck(self, request: dpb.HealthCheckRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        status = (dpb.HealthCheckResponse.SERVING if request.service in HEALTH_NAMES
                  else dpb.HealthCheckResponse.SERVICE_UNKNOWN)
        return dpb.HealthCheckResponse(status=status)

    async def GetCertificate(self, request: dpb.CertificateRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        lv = await self._load("certificates", await self._group("", context))
        want_temp = {"temporary": True, "production": False}.get(request.certificate_type.lower())
        if lv is not None:
            for c in _update(lv).certificates.certificates:
                if any(_matches(d, request.domain) for d in c.domains) and want_temp in (None, c.temporary):
                    return dpb.CertificateResponse(**_cert_fields(c, request.domain))
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no certificate for {request.domain!r}")

    async def WatchCertificateUpdates(self, request: dpb.CertificateWatchRequest,  # noqa: N802
                                      context: grpc.aio.ServicerContext) -> AsyncIterator[dpb.CertificateUpdate]:
        group_id = await self._group(request.gateway_id, context)
        wanted = set(request.domains)
        sent: dict[str, str] = {}  # domain -> fingerprint
        async for lv in self._watch("certificates", group_id):
            now: dict[str, pb.Certificate] = {}
            for c in _update(lv).certificates.certificates:
                for d in c.domains:
                    if not wanted or d in wanted:
                        now[d] = c
            for d, c in sorted(now.items()):
                if sent.get(d) != c.fingerprint:
                    sent[d] = c.fingerprint
                    yield dpb.CertificateUpdate(**_cert_fields(c, d),
                                                update_type="TEMPORARY" if c.temporary else "RENEWED")
            for d in sorted(set(sent) - set(now)):
                del sent[d]
                yield dpb.CertificateUpdate(domain=d, update_type="REVOKED")

    async def GetConfiguration(self, request: dpb.ConfigurationRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        rtype = CONFIG_TYPES.get(request.config_type)
        if rtype is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unknown config_type {request.config_type!r}; expected waf, gateway or emergency")
        lv = await self._load(rtype, await self._group(request.gateway_id, context))
        if lv is None or (request.config_version and request.config_version != str(lv.version)):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no {request.config_type} version {request.config_version or '(latest)'}")
        data = _config_data(_update(lv))
        return dpb.ConfigurationResponse(config_type=request.config_type, config_version=str(lv.version),
                                         config_data=data, updated_at=int(lv.created_at.timestamp()),
                                         checksum=hashlib.sha256(data.encode()).hexdigest())

    async def UpdateConfiguration(self, request: dpb.UpdateConfigurationRequest,  # noqa: N802
                                  context: grpc.aio.ServicerContext) -> object:
        # The Worker owns desired state: changes go through validation, replay and approval (issue 6).
        return dpb.UpdateConfigurationResponse(
            success=False, message="read-only: configuration is changed in the Worker (validated, approved, "
                                   "then pushed), not by a Gateway")

    async def WatchConfigurationUpdates(self, request: dpb.ConfigurationWatchRequest,  # noqa: N802
                                        context: grpc.aio.ServicerContext) -> AsyncIterator[dpb.ConfigurationUpdate]:
        names = list(request.config_types) or ["waf", "gateway", "emergency"]
        bad = [n for n in names if n not in CONFIG_TYPES]
        if bad:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown config_types {bad}")
        group_id = await self._group(request.gateway_id, context)
        by_type = {CONFIG_TYPES[n]: n for n in names}
        queue: asyncio.Queue[store.LoadedVersion] = asyncio.Queue()
        seen: set[str] = set()
        tasks = [asyncio.create_task(self._pump(t, group_id, queue)) for t in by_type]
        try:
            while True:
                lv = await queue.get()
                data = _config_data(_update(lv))
                yield dpb.ConfigurationUpdate(
                    config_type=by_type[lv.resource_type], config_version=str(lv.version), config_data=data,
                    updated_at=int(lv.created_at.timestamp()), checksum=hashlib.sha256(data.encode()).hexdigest(),
                    update_type="UPDATED" if lv.resource_type in seen else "CREATED")
                seen.add(lv.resource_type)
        finally:
            for t in tasks:
                t.cancel()

    async def _pump(self, rtype: str, group_id: int | None, queue: asyncio.Queue[store.LoadedVersion]) -> None:
        async for lv in self._watch(rtype, group_id):
            queue.put_nowait(lv)

    async def _watch(self, rtype: str, group_id: int | None) -> AsyncIterator[store.LoadedVersion]:
        """The current version of (type, group), then every newer one this replica learns about."""
        queue: asyncio.Queue[store.LoadedVersion] = asyncio.Queue()

        def on_version(lv: store.LoadedVersion) -> None:
            if lv.resource_type == rtype and lv.group_id == group_id:
                queue.put_nowait(lv)

        self.hub.watchers.add(on_version)
        metrics.STREAMS.inc()
        try:
            last = 0
            current = await self._load(rtype, group_id)
            if current is not None:
                queue.put_nowait(current)
            while True:
                lv = await queue.get()
                if lv.version > last:
                    last = lv.version
                    yield lv
        finally:
            self.hub.watchers.discard(on_version)
            metrics.STREAMS.dec()

    async def SendLogs(self, request_iterator: AsyncIterator[dpb.LogEntry],  # noqa: N802
                       context: grpc.aio.ServicerContext) -> object:
        processed = 0
        async for _entry in request_iterator:
            processed += 1  # counted, not kept: the log-pipeline work stores them
        return dpb.LogProcessingResponse(success=True, message="accepted", processed_count=processed, error_count=0)

    async def GetMetrics(self, request: dpb.MetricsRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        now = int(time.time())
        return dpb.MetricsResponse(metrics=[
            dpb.MetricData(name="gw_push_streams", type="GAUGE", value=float(len(self.hub.streams)), timestamp=now,
                           labels={"replica": self.hub.replica}),
        ])
