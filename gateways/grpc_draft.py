"""The Gateway's draft ``gateway_worker.GatewayWorkerService``, served from the same desired state.

Choices the draft leaves open are written down in proto/README.md: timestamps are unix seconds, checksums are
lowercase hex SHA-256 of ``config_data`` (UTF-8), config_version is our version number as a decimal string,
config types are ``waf`` (waf_rules), ``gateway`` (config) and ``emergency`` (emergency_rules, as JSON).
The group served is the caller's credential's (grpc_auth); a ``gateway_id`` in a request must be the
credential's instance id or empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc
from gateway_worker.v1 import gateway_worker_pb2 as pb
from google.protobuf import json_format

from worker_project.dnsnames import name_covered

from . import intake, store
from .grpc_auth import StreamError, clip, current_identity, current_session
from .grpc_push import check_claims
from .hub import Hub, in_thread
from .models import DEFAULT_GROUP

CONFIG_TYPES = {"waf": "waf_rules", "gateway": "config", "emergency": "emergency_rules",
                "waf_rules": "waf_rules", "config": "config", "emergency_rules": "emergency_rules",
                "modsecurity": "modsecurity"}
HEALTH_NAMES = {"", "gateway-worker", "gateway_worker.GatewayWorkerService"}


_DOMAIN_MAX = 253
LOG_BATCH = 500  # SendLogs entries handed to the log pipeline at once (each batch stored before the next is read)
_MAX_WATCH_DOMAINS = 1000


def _default_group_id() -> int | None:
    from .models import GatewayGroup
    return GatewayGroup.objects.filter(name=DEFAULT_GROUP).values_list("id", flat=True).first()


def _check_domain(domain: str) -> str:
    if not domain or len(domain) > _DOMAIN_MAX or any(c.isspace() or c == "\x00" for c in domain):
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"domain {clip(domain)} is not a DNS name (1-{_DOMAIN_MAX} characters, no spaces)")
    return domain.lower().rstrip(".")


def _update(lv: store.LoadedVersion) -> pb.ResourceUpdate:
    return pb.WorkerMessage.FromString(lv.message_bytes).update


def _config_data(u: pb.ResourceUpdate) -> str:
    if u.type == "emergency_rules":
        return json.dumps(json_format.MessageToDict(u.emergency_rules, preserving_proto_field_name=True),
                          sort_keys=True)
    return getattr(u, u.type).content


def _cert_fields(c: pb.Certificate, domain: str) -> dict[str, Any]:
    return {"domain": domain, "certificate_pem": c.cert_pem, "private_key_pem": c.key_pem,
            "certificate_chain_pem": c.chain_pem, "expires_at": c.not_after, "is_temporary": c.temporary,
            "certificate_id": str(c.version_id or c.serial)}


class DraftServicer(dgrpc.GatewayWorkerServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def register(self, server: grpc.aio.Server) -> None:
        dgrpc.add_GatewayWorkerServiceServicer_to_server(self, server)

    async def _load(self, rtype: str, group_id: int | None) -> store.LoadedVersion | None:
        if group_id is None:
            return None
        await self.hub.ensure_built(group_id)
        loaded = await in_thread(store.load_desired, [(rtype, group_id)], self.hub.nonce_prefix)
        return loaded[0] if loaded else None

    async def _group(self, gateway_id: str) -> int | None:
        """The caller's group: its credential's (a ``gateway_id`` naming another Gateway is refused)."""
        ident = current_identity()
        check_claims(ident, instance_id=gateway_id, what="gateway_id")
        if ident is not None:
            return ident.group_id
        return await in_thread(_default_group_id)  # plaintext development mode only

    async def HealthCheck(self, request: dpb.HealthCheckRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        status = (dpb.HealthCheckResponse.SERVING if request.service in HEALTH_NAMES
                  else dpb.HealthCheckResponse.SERVICE_UNKNOWN)
        return dpb.HealthCheckResponse(status=status)

    async def GetCertificate(self, request: dpb.CertificateRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        domain = _check_domain(request.domain)
        want_temp = {"temporary": True, "production": False}.get(request.certificate_type[:32].lower())
        lv = await self._load("certificates", await self._group(""))
        if lv is not None:
            for c in _update(lv).certificates.certificates:
                if name_covered(domain, list(c.domains)) and want_temp in (None, c.temporary):
                    return dpb.CertificateResponse(**_cert_fields(c, domain))
        requester = intake.certificate_requester()
        ident = current_identity()
        if requester is not None and ident is not None and want_temp is not True:
            outcome = await in_thread(requester, ident.group_id, domain)
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"no certificate for {domain!r}: {outcome[:80]}")
        raise StreamError(grpc.StatusCode.NOT_FOUND, f"no certificate for {domain!r}")

    async def WatchCertificateUpdates(self, request: dpb.CertificateWatchRequest,  # noqa: N802
                                      context: grpc.aio.ServicerContext) -> AsyncIterator[dpb.CertificateUpdate]:
        group_id = await self._group(request.gateway_id)
        if len(request.domains) > _MAX_WATCH_DOMAINS:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{len(request.domains)} domains: watch at most {_MAX_WATCH_DOMAINS} (or none for all)")
        wanted = {_check_domain(d) for d in request.domains}
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
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"unknown config_type {clip(request.config_type)}; expected waf, gateway or emergency")
        lv = await self._load(rtype, await self._group(request.gateway_id))
        if lv is None or (request.config_version and request.config_version != str(lv.version)):
            raise StreamError(grpc.StatusCode.NOT_FOUND,
                              f"no {request.config_type} version {clip(request.config_version or '(latest)')}")
        data = _config_data(_update(lv))
        return dpb.ConfigurationResponse(config_type=request.config_type, config_version=str(lv.version),
                                         config_data=data, updated_at=int(lv.created_at.timestamp()),
                                         checksum=hashlib.sha256(data.encode()).hexdigest())

    async def UpdateConfiguration(self, request: dpb.UpdateConfigurationRequest,  # noqa: N802
                                  context: grpc.aio.ServicerContext) -> object:
        # The Worker owns desired state: changes go through validation, replay and approval.
        check_claims(current_identity(), instance_id=request.gateway_id, what="gateway_id")
        return dpb.UpdateConfigurationResponse(
            success=False, message="read-only: configuration is changed in the Worker (validated, approved, "
                                   "then pushed), not by a Gateway")

    async def WatchConfigurationUpdates(self, request: dpb.ConfigurationWatchRequest,  # noqa: N802
                                        context: grpc.aio.ServicerContext) -> AsyncIterator[dpb.ConfigurationUpdate]:
        names = list(request.config_types) or ["waf", "gateway", "emergency"]
        bad = [n for n in names if n not in CONFIG_TYPES]
        if bad:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"unknown config_types {clip(bad)}; expected waf, gateway or emergency")
        group_id = await self._group(request.gateway_id)
        by_type = {CONFIG_TYPES[n]: n for n in names}
        queue: asyncio.Queue[store.LoadedVersion | StreamError] = asyncio.Queue()
        seen: set[str] = set()
        tasks = [asyncio.create_task(self._pump(t, group_id, queue)) for t in by_type]
        try:
            while True:
                lv = await queue.get()
                if isinstance(lv, StreamError):
                    raise lv
                data = _config_data(_update(lv))
                yield dpb.ConfigurationUpdate(
                    config_type=by_type[lv.resource_type], config_version=str(lv.version), config_data=data,
                    updated_at=int(lv.created_at.timestamp()), checksum=hashlib.sha256(data.encode()).hexdigest(),
                    update_type="UPDATED" if lv.resource_type in seen else "CREATED")
                seen.add(lv.resource_type)
        finally:
            for t in tasks:
                t.cancel()

    async def _pump(self, rtype: str, group_id: int | None,
                    queue: asyncio.Queue[store.LoadedVersion | StreamError]) -> None:
        try:
            async for lv in self._watch(rtype, group_id):
                queue.put_nowait(lv)
        except StreamError as exc:
            queue.put_nowait(exc)

    async def _watch(self, rtype: str, group_id: int | None) -> AsyncIterator[store.LoadedVersion]:
        """The current version of (type, group), then every newer one this replica learns about (the hub's
        reconcile covers the groups watched here, so a lost notice is still delivered)."""
        if group_id is None:
            raise StreamError(grpc.StatusCode.FAILED_PRECONDITION, "no group to watch")
        queue: asyncio.Queue[store.LoadedVersion | StreamError] = asyncio.Queue()

        def on_version(lv: store.LoadedVersion) -> None:
            if lv.resource_type == rtype and lv.group_id == group_id:
                queue.put_nowait(lv)

        session = current_session()
        if session is not None and session.on_close is None:
            session.on_close = queue.put_nowait  # revoked or moved: end the watch with that status
        elif session is not None and (previous := session.on_close) is not None:  # several watches share one call
            def close_both(err: StreamError) -> None:  # WatchConfigurationUpdates: end every watch of the call
                previous(err)
                queue.put_nowait(err)

            session.on_close = close_both
        self.hub.watch(group_id, on_version)
        try:
            last = 0
            current = await self._load(rtype, group_id)
            if current is not None:
                queue.put_nowait(current)
            while True:
                lv = await queue.get()
                if isinstance(lv, StreamError):
                    raise lv
                if lv.version > last:
                    last = lv.version
                    yield lv
        finally:
            self.hub.unwatch(group_id, on_version)

    async def SendLogs(self, request_iterator: AsyncIterator[dpb.LogEntry],  # noqa: N802
                       context: grpc.aio.ServicerContext) -> object:
        """Entries go to the log pipeline in batches, each stored before the next is read: what is counted as
        processed is stored. Every entry is tagged with the caller's instance id (a LogEntry.gateway_id naming
        another Gateway is refused)."""
        ident = current_identity()
        instance_id = ident.instance_id if ident is not None else "insecure-dev"
        sink = intake.log_sink()
        received, processed, errors = 0, 0, 0
        batch: list[dict[str, object]] = []

        async def flush() -> None:
            nonlocal processed, errors
            if batch and sink is not None:
                result = await in_thread(sink, "grpc-sendlogs", instance_id, list(batch), "gateway-entry")
                processed, errors = processed + result.processed, errors + result.errors
            batch.clear()

        async for entry in request_iterator:
            check_claims(ident, instance_id=entry.gateway_id, what="LogEntry.gateway_id")
            received += 1
            batch.append(json_format.MessageToDict(entry, preserving_proto_field_name=True))
            if len(batch) >= LOG_BATCH:
                await flush()
        await flush()
        if sink is None:
            return dpb.LogProcessingResponse(
                success=False, processed_count=0, error_count=0,
                message=f"received {received} entries and stored none: no log pipeline is installed")
        return dpb.LogProcessingResponse(success=errors == 0, processed_count=processed, error_count=errors,
                                         message=f"stored {processed} of {received} entries; {errors} malformed")

    async def GetMetrics(self, request: dpb.MetricsRequest, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        now = int(time.time())
        return dpb.MetricsResponse(metrics=[
            dpb.MetricData(name="gw_push_streams", type="GAUGE", value=float(len(self.hub.streams)), timestamp=now,
                           labels={"replica": self.hub.replica}),
        ])
