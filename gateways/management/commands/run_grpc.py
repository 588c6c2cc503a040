"""manage.py run_grpc: one push-plane replica (asyncio gRPC server + Redis notices + reconcile timer)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from prometheus_client import start_http_server

from gateways import metrics
from gateways.grpc_server import ServerConfig, start_server


class Command(BaseCommand):
    help = "Serve the Gateway push plane (gateway_worker.v1.PushService and the Gateway's draft service)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", help="host:port (default GRPC_BIND)")
        parser.add_argument("--insecure", action="store_true", default=None,
                            help="plaintext, development only (default GRPC_INSECURE)")
        parser.add_argument("--metrics-port", type=int,
                            default=settings.GRPC_METRICS_PORT,
                            help="Prometheus /metrics port of this replica (0: off; env GRPC_METRICS_PORT)")
        parser.add_argument("--metrics-bind", default=settings.GRPC_METRICS_BIND)

    def handle(self, *args: Any, **opts: Any) -> None:
        cfg = ServerConfig.from_settings(bind=opts["bind"], insecure=opts["insecure"])
        if opts["metrics_port"]:
            start_http_server(opts["metrics_port"], addr=opts["metrics_bind"], registry=metrics.REGISTRY)
        asyncio.run(self._serve(cfg))

    async def _serve(self, cfg: ServerConfig) -> None:
        running = await start_server(cfg)
        self.stdout.write(f"run_grpc listening on port {running.port} as {running.hub.replica}", ending="\n")
        self.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await running.stop(grace=5.0)
