"""The push stream: Hello with the versions on disk, apply each update, ACK or NACK; reconnect with backoff."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from . import __version__
from .apply import Applier, ApplyError, journal_line
from .config import AgentConfig
from .files import atomic_write
from .logship import Tailer

logger = logging.getLogger(__name__)

# statuses after which retrying cannot help (no or revoked certificate): stop instead of looping. Anything
# else, a protocol complaint included, reconnects with backoff: an agent that exits leaves its Gateway
# without certificate updates, which is worse than a slow retry loop that shows in the Worker's admin.
FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def channel(cfg: AgentConfig, address: str | None = None) -> grpc.aio.Channel:
    address = address or cfg.servers[0]
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.keepalive_time_ms", 30_000)]
    if cfg.insecure:
        return grpc.aio.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(cfg.ca).read_bytes(), private_key=Path(cfg.key).read_bytes(),
        certificate_chain=Path(cfg.cert).read_bytes())
    name = cfg.server_name or urlsplit(f"//{address}").hostname or "localhost"
    return grpc.aio.secure_channel(address, creds, options=[*options, ("grpc.ssl_target_name_override", name)])


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.applier = Applier(cfg)
        self.known: dict[str, int] = self._load_known()
        self.tailer = (Tailer(cfg.access_log, self.state_dir / "logship.json", max_lines=cfg.log_batch_lines)
                       if cfg.access_log else None)

    @property
    def _known_path(self) -> Path:
        return self.state_dir / "versions.json"

    def _load_known(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in json.loads(self._known_path.read_text()).items()}
        except FileNotFoundError:
            return {}

    def _journal(self, update: pb.ResourceUpdate, result: str) -> None:
        with open(self.state_dir / "journal.jsonl", "a") as fh:
            fh.write(journal_line(update, result))

    async def run_forever(self) -> None:
        backoff = 0.5
        servers = self.cfg.servers
        at = 0
        while True:
            address = servers[at]
            try:
                await self.run_once(address)
                backoff = 0.5
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL:
                    logger.error("Worker refused this agent: %s %s", exc.code().name, exc.details())
                    raise
                at = (at + 1) % len(servers)  # another replica next: the Hello tells it what this Gateway runs
                logger.warning("stream to %s ended: %s %s; connecting to %s in %.1fs", address, exc.code().name,
                               exc.details(), servers[at], backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # jitter: a fleet must not reconnect in step
            if at == 0 or len(servers) == 1:  # back off once every replica has been tried
                backoff = min(backoff * 2, self.cfg.backoff_max)

    async def run_once(self, address: str | None = None) -> None:
        async with channel(self.cfg, address) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello(
                instance_id=self.cfg.instance_id, group=self.cfg.group, agent_version=__version__,
                known_versions=self.known)))
            # One applier task per resource type: a slow certificates reload never delays challenge tokens, and
            # while a type is busy only its newest pending version is kept (the ACK of a newer version settles
            # the skipped ones on the Worker). Replies go through one lock: a call takes one write at a time.
            pending: dict[str, pb.ResourceUpdate] = {}
            wakeups: dict[str, asyncio.Event] = {}
            write_lock = asyncio.Lock()
            workers: list[asyncio.Task[None]] = []
            log_acked = asyncio.Event()

            async def ship_loop(tailer: Tailer) -> None:
                # one batch in flight: read from the acknowledged offset, send, wait for the LogAck (which moves
                # the offset); no ack in time: send again from the same offset (the Worker stores a range once)
                while True:
                    batch = await asyncio.to_thread(tailer.read_batch)
                    if batch is None:
                        await asyncio.sleep(self.cfg.log_poll_seconds)
                        continue
                    log_acked.clear()
                    async with write_lock:
                        await call.write(batch.message())
                    try:
                        await asyncio.wait_for(log_acked.wait(), self.cfg.log_ack_timeout)
                    except TimeoutError:
                        logger.warning("no LogAck for %s [%d, %d); resending", batch.source, batch.offset_start,
                                       batch.offset_end)

            async def apply_loop(rtype: str) -> None:
                while True:
                    await wakeups[rtype].wait()
                    wakeups[rtype].clear()
                    update = pending.pop(rtype)
                    reply = await self.handle(update)
                    async with write_lock:
                        await call.write(reply)

            if self.tailer is not None:
                workers.append(asyncio.create_task(ship_loop(self.tailer)))
            try:
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        await call  # raises the final status if it was an error
                        return
                    kind = msg.WhichOneof("msg")
                    if kind == "welcome":
                        logger.info("connected to Worker replica %s", msg.welcome.replica)
                    elif kind == "update":
                        rtype = msg.update.type
                        pending[rtype] = msg.update
                        if rtype not in wakeups:
                            wakeups[rtype] = asyncio.Event()
                            workers.append(asyncio.create_task(apply_loop(rtype)))
                        wakeups[rtype].set()
                    elif kind == "log_ack" and self.tailer is not None:
                        await asyncio.to_thread(self.tailer.acked, msg.log_ack)
                        log_acked.set()
                    for w in workers:
                        if w.done() and w.exception() is not None:  # a reply could not be written: stream is over
                            await call
                            raise w.exception()  # type: ignore[misc]
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def handle(self, update: pb.ResourceUpdate) -> pb.GatewayMessage:
        """Apply one update (run_once keeps one task per type, so same-type updates never overlap)."""
        try:
            await asyncio.to_thread(self.applier.apply, update)
        except ApplyError as exc:
            logger.warning("rejected %s version %s: %s", update.type, update.version, exc)
            self._journal(update, f"nack: {exc}")
            return pb.GatewayMessage(nack=pb.Nack(type=update.type, version=update.version, nonce=update.nonce,
                                                  error=str(exc)[:2000]))
        self.known[update.type] = update.version
        atomic_write(self._known_path, json.dumps(self.known, sort_keys=True).encode())
        self._journal(update, "ack")
        logger.info("applied %s version %s", update.type, update.version)
        return pb.GatewayMessage(ack=pb.Ack(type=update.type, version=update.version, nonce=update.nonce))
