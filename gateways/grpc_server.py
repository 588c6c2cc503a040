"""Assemble the run_grpc server: push service, the Gateway's draft service, health, reflection, mTLS."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from django.conf import settings
from gateway_worker import gateway_worker_pb2 as draft_pb
from gateway_worker.v1 import gateway_worker_pb2 as pb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from .grpc_auth import Authenticator, GuardedServer, Limits
from .grpc_draft import DraftServicer
from .grpc_push import SERVICE, PushServicer
from .hub import Hub

logger = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    bind: str = "127.0.0.1:50051"
    insecure: bool = False
    cert: str = ""
    key: str = ""
    ca: str = ""
    max_message_bytes: int = 4 * 1024 * 1024      # the largest any RPC takes (a push-stream log batch)
    max_streams_per_credential: int = 8
    max_pending_calls: int = 20_000
    unary_rate: float = 20.0
    unanswered_max_bytes: int = 64 * 1024 * 1024
    answer_timeout: float = 120.0
    credential_cache_seconds: float = 5.0
    hello_timeout: float = 10.0
    debounce_seconds: float = 0.05
    reconcile_seconds: float = 30.0
    listen_redis: bool = True
    replica: str = ""

    def limits(self) -> Limits:
        """Per-credential bounds, and a request-size limit per method fitting its purpose."""
        kib = 1024
        return Limits(
            max_streams_per_credential=self.max_streams_per_credential, unary_rate=self.unary_rate,
            unanswered_max_bytes=self.unanswered_max_bytes, answer_timeout=self.answer_timeout,
            credential_cache_seconds=self.credential_cache_seconds, default_request_bytes=64 * kib,
            request_bytes={
                f"/{SERVICE}/Stream": self.max_message_bytes,                       # Hello, ACKs, log batches
                "/gateway_worker.GatewayWorkerService/SendLogs": 64 * kib,          # one LogEntry
                "/gateway_worker.GatewayWorkerService/UpdateConfiguration": 64 * kib,
            })

    @classmethod
    def from_settings(cls, **overrides: object) -> ServerConfig:
        cfg = cls(bind=settings.GRPC_BIND, insecure=settings.GRPC_INSECURE, cert=settings.GRPC_TLS_CERT,
                  key=settings.GRPC_TLS_KEY, ca=settings.GRPC_CA_CERT,
                  max_message_bytes=settings.GRPC_MAX_MESSAGE_BYTES,
                  max_streams_per_credential=settings.GRPC_MAX_STREAMS_PER_CREDENTIAL,
                  max_pending_calls=settings.GRPC_MAX_PENDING_CALLS,
                  unary_rate=settings.GRPC_UNARY_RATE, unanswered_max_bytes=settings.GRPC_UNANSWERED_MAX_BYTES,
                  answer_timeout=settings.GRPC_ANSWER_TIMEOUT_SECONDS,
                  credential_cache_seconds=settings.GRPC_CREDENTIAL_CACHE_SECONDS,
                  debounce_seconds=settings.PUSH_DEBOUNCE_SECONDS, reconcile_seconds=settings.PUSH_RECONCILE_SECONDS)
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    hub: Hub

    async def stop(self, grace: float = 1.0) -> None:
        await self.server.stop(grace)
        await self.hub.stop()


def server_credentials(cfg: ServerConfig) -> grpc.ServerCredentials:
    missing = [p for p in (cfg.cert, cfg.key, cfg.ca) if not p or not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"mTLS needs GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_CA_CERT; missing {missing} "
                                "(make them with `manage.py issue_gateway_cert worker --server`, or set "
                                "GRPC_INSECURE=true for development)")
    return grpc.ssl_server_credentials([(Path(cfg.key).read_bytes(), Path(cfg.cert).read_bytes())],
                                       root_certificates=Path(cfg.ca).read_bytes(), require_client_auth=True)


async def start_server(cfg: ServerConfig) -> RunningServer:
    replica = cfg.replica or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    auth = Authenticator(insecure=cfg.insecure, limits=cfg.limits())
    hub = Hub(replica, cfg.debounce_seconds, cfg.reconcile_seconds, auth, listen_redis=cfg.listen_redis)
    grpc_server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", max(cfg.max_message_bytes, 64 * 1024 * 1024)),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.max_concurrent_streams", 100_000),
        # TLS records this replica writes are at most 4 KiB (grpc's default 16 KiB): the per-connection protect
        # buffers shrink with it, ~5 KiB less per idle stream (bench/push_stream_memory.py, docs/benchmarks.md);
        # a large push is split into more records, which costs little next to encrypting its bytes.
        ("grpc.tsi.max_frame_size", 4096),
        # A connection storm (a fleet reconnecting to this replica) queues calls in grpc core faster than the
        # event loop takes them up; past grpc's default backlog (1,000; random refusals up to 3,000) they are
        # refused and the Gateways see CANCELLED. Soft = hard: no random refusals below the bound.
        ("grpc.server.max_pending_requests", cfg.max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", cfg.max_pending_calls),
    ])
    # Every service registers through the guard: no RPC, health and reflection included, skips the credential.
    server: Any = GuardedServer(grpc_server, auth)
    push = PushServicer(hub, hello_timeout=cfg.hello_timeout)
    server.add_generic_rpc_handlers([push.handler()])
    DraftServicer(hub).register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [SERVICE, draft_pb.DESCRIPTOR.services_by_name["GatewayWorkerService"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    # (enable_server_reflection would pick the synchronous servicer: the guard is not a grpc.aio.Server)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(names), server)
    server = grpc_server
    assert pb.DESCRIPTOR.services_by_name["PushService"].full_name == SERVICE
    if cfg.insecure:
        logger.warning("run_grpc is serving PLAINTEXT on %s (GRPC_INSECURE=true): development only", cfg.bind)
        port = server.add_insecure_port(cfg.bind)
    else:
        port = server.add_secure_port(cfg.bind, server_credentials(cfg))
    if port == 0:
        raise OSError(f"could not bind {cfg.bind}")
    await server.start()
    hub.start()
    for name in ("", *names[:2]):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("run_grpc replica %s serving on port %d (%s)", replica, port, "plaintext" if cfg.insecure else "mTLS")
    return RunningServer(server, port, hub)
