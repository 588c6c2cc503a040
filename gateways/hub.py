"""The push hub of one run_grpc replica: which streams it holds, what each was sent, and delivery.

Every stream of a group shares one serialized WorkerMessage per version (serialized once per replica).
Notices (Redis) and the reconcile timer only mark (type, group) keys dirty; a debounce then loads the newest
desired version of each dirty key once and offers it to the streams of that group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from django.db import close_old_connections, connections
from django.utils import timezone

from . import credentials, metrics, notify, store
from .grpc_auth import Authenticator, Session
from .resources import RESOURCE_TYPES

logger = logging.getLogger(__name__)
T = TypeVar("T")


_thread_connections: dict[int, Any] = {}


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Django ORM work off the event loop, on a connection that is checked before use."""
    def run() -> T:
        close_old_connections()
        _thread_connections[threading.get_ident()] = connections["default"]
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, run)


def close_thread_connections() -> None:
    """At shutdown: close the executor threads' database connections (they would outlive the server)."""
    for conn in list(_thread_connections.values()):
        raw = getattr(conn, "connection", None)
        if raw is not None:
            raw.close()
    _thread_connections.clear()


class Outbox:
    """What the stream's writer sends next, in order: bytes, or None/an error to end the stream.

    ``asyncio.Queue`` would do, but it allocates four deques (~3 KiB) per stream, ~3 % of what an idle stream
    costs the replica; one list and at most one waiting future do the same for one consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def qsize(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class StreamState:
    instance_id: str
    instance_pk: int
    group_id: int
    group_name: str
    session: Session | None = None
    shipping: asyncio.Future[Any] | None = None  # the log batch being stored (batches of a stream go in order)
    queue: Outbox = field(default_factory=Outbox)  # bytes, or None/error: end
    known: dict[str, int] = field(default_factory=dict)         # type -> version the Gateway said it runs (Hello)
    sent: dict[str, int] = field(default_factory=dict)          # type -> newest version sent on this stream
    parked: dict[str, int] = field(default_factory=dict)        # type -> NACKed version, never resent
    # type -> {version: (nonce, created, sent at (monotonic), bytes)}: sent, not yet answered. Several can be in
    # flight: a burst of publishes sends version N+1 before the Gateway answers N, and the answer to N is valid.
    outstanding: dict[str, dict[int, tuple[str, float, float, int]]] = field(default_factory=dict)
    unanswered_bytes: int = 0

    def outstanding_count(self) -> int:
        return sum(len(per) for per in self.outstanding.values())


class Hub:
    def __init__(self, replica: str, debounce_seconds: float, reconcile_seconds: float, auth: Authenticator,
                 listen_redis: bool = True) -> None:
        self.replica = replica
        self.auth = auth
        self.nonce_prefix = replica.rsplit(":", 1)[-1]
        self.debounce = debounce_seconds
        self.reconcile_seconds = reconcile_seconds
        self.listen_redis = listen_redis
        self.streams: dict[str, StreamState] = {}
        self.by_group: dict[int, set[StreamState]] = {}
        self.cache: dict[tuple[str, int], store.LoadedVersion] = {}
        self.dirty: set[tuple[str, int]] = set()
        self._dirty_event = asyncio.Event()
        self._events: list[store.Event] = []
        self._events_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.watchers: set[Callable[[store.LoadedVersion], None]] = set()  # the draft service's watch streams
        self.watch_groups: dict[int, int] = {}  # group id -> open draft watches (the reconcile covers them too)
        self._revocations_checked = timezone.now()
        self._built_groups: set[int] = set()  # groups whose every registered type has a version (checked once)

    # ---- lifecycle ----
    def start(self) -> None:
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [self._debounce_loop, self._writer_loop,
                                                                self._reconcile_loop, self._watchdog_loop]
        if self.listen_redis:
            loops.append(self._redis_loop)
        self._tasks = [asyncio.create_task(f()) for f in loops]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush()
        await in_thread(store.release_replica, self.replica)

    # ---- streams ----
    def attach(self, st: StreamState) -> None:
        old = self.streams.pop(st.instance_id, None)
        if old is not None:  # the same instance reconnected before its old stream ended
            self.by_group.get(old.group_id, set()).discard(old)
        self.streams[st.instance_id] = st
        self.by_group.setdefault(st.group_id, set()).add(st)

    def detach(self, st: StreamState) -> bool:
        members = self.by_group.get(st.group_id)
        if members is not None:
            members.discard(st)
            if not members:
                del self.by_group[st.group_id]
                self._forget_group(st.group_id)
        if self.streams.get(st.instance_id) is st:
            del self.streams[st.instance_id]
            return True
        return False

    def watch(self, group_id: int, callback: Callable[[store.LoadedVersion], None]) -> None:
        self.watchers.add(callback)
        self.watch_groups[group_id] = self.watch_groups.get(group_id, 0) + 1

    def unwatch(self, group_id: int, callback: Callable[[store.LoadedVersion], None]) -> None:
        if callback in self.watchers:
            self.watchers.discard(callback)
            left = self.watch_groups.get(group_id, 1) - 1
            if left > 0:
                self.watch_groups[group_id] = left
            else:
                self.watch_groups.pop(group_id, None)
                self._forget_group(group_id)

    def _forget_group(self, group_id: int) -> None:
        """No stream or watch of this group is left here: notices for it are ignored from now on, so its cached
        versions would go stale; the next Gateway of the group loads them afresh."""
        if group_id in self.by_group or group_id in self.watch_groups:
            return
        for key in [k for k in self.cache if k[1] == group_id]:
            del self.cache[key]

    def close_credential(self, fingerprint: str, revoked: bool, reason: str) -> int:
        """End every open call of one credential on this replica (revoked: PERMISSION_DENIED; moved: UNAVAILABLE,
        so the Gateway reconnects into its new group)."""
        import grpc
        code = grpc.StatusCode.PERMISSION_DENIED if revoked else grpc.StatusCode.UNAVAILABLE
        text = f"client certificate revoked ({reason})" if revoked else f"credential changed: {reason}"
        return self.auth.close_credential(fingerprint, code, text[:200])

    async def ensure_built(self, group_id: int) -> None:
        """Once per group and replica: build the types a group has no version of yet (a group made by the
        migration, or a resource type registered after the group was made)."""
        if group_id not in self._built_groups:
            await in_thread(store.build_missing, group_id)
            self._built_groups.add(group_id)

    async def initial_push(self, st: StreamState) -> None:
        """After Hello: offer the desired version of every type (what the Gateway runs is skipped)."""
        await self.ensure_built(st.group_id)
        keys = [(t, st.group_id) for t in sorted(RESOURCE_TYPES)]
        missing = [k for k in keys if k not in self.cache]
        if missing:
            for lv in await in_thread(store.load_desired, missing, self.nonce_prefix):
                self._cache_put(lv)
        for k in keys:
            if k in self.cache:
                self.offer(st, self.cache[k])

    def offer(self, st: StreamState, lv: store.LoadedVersion) -> None:
        rtype = lv.resource_type
        if lv.version <= st.sent.get(rtype, 0) or st.parked.get(rtype) == lv.version \
                or st.known.get(rtype) == lv.version:
            return  # never the same version twice, nor what it runs; a parked (NACKed) version is not resent
        size = len(lv.message_bytes)
        if st.unanswered_bytes + size > self.auth.limits.unanswered_max_bytes and st.outstanding_count():
            self._cut_off(st, f"{st.unanswered_bytes + size} bytes of updates unanswered (limit "
                              f"{self.auth.limits.unanswered_max_bytes})")
            return
        st.sent[rtype] = lv.version
        st.outstanding.setdefault(rtype, {})[lv.version] = (lv.nonce, lv.created_at.timestamp(), time.monotonic(),
                                                            size)
        st.unanswered_bytes += size
        st.queue.put_nowait(lv.message_bytes)
        metrics.PUSHES.labels(rtype).inc()
        self.record(store.Event("sent", st.instance_pk, rtype, lv.version, nonce=lv.nonce, at=timezone.now()))

    def ack(self, st: StreamState, rtype: str, version: int, nonce: str) -> str | None:
        """Returns an error text when the ACK does not match what this stream was sent."""
        out = self._answered(st, rtype, version, nonce)
        if out is None:
            return f"ACK for {rtype} version {version} nonce {nonce!r} that was not sent on this stream"
        pending = st.outstanding[rtype]
        for older in [v for v in pending if v < version]:  # the Gateway runs `version` now: older ones are moot
            st.unanswered_bytes -= pending.pop(older)[3]
        if not pending:  # an emptied dict keeps its table: ~1.3 KiB per idle stream over the resource types
            del st.outstanding[rtype]
        converge = max(0.0, time.time() - out[1])
        metrics.ACKS.labels(rtype).inc()
        metrics.CONVERGE.labels(rtype).observe(converge)
        self.record(store.Event("ack", st.instance_pk, rtype, version, at=timezone.now(), converge_seconds=converge))
        return None

    def nack(self, st: StreamState, rtype: str, version: int, nonce: str, error: str) -> str | None:
        if self._answered(st, rtype, version, nonce) is None:
            return f"NACK for {rtype} version {version} nonce {nonce!r} that was not sent on this stream"
        if not st.outstanding.get(rtype):
            st.outstanding.pop(rtype, None)
        # Parked: this stream never offers a version twice anyway (``sent``); the recorded NACK parks it for the
        # instance's later streams (``Registered.parked``) until an operator's resync.
        metrics.NACKS.labels(rtype).inc()
        self.record(store.Event("nack", st.instance_pk, rtype, version, error=error or "(no error text)",
                                at=timezone.now()))
        return None

    @staticmethod
    def _answered(st: StreamState, rtype: str, version: int, nonce: str) -> tuple[str, float, float, int] | None:
        """Take ``version`` off the stream's outstanding set if it was sent there (with that nonce)."""
        pending = st.outstanding.get(rtype, {})
        out = pending.get(version)
        if out is None or out[0] != nonce:  # only the nonce this stream was sent proves the version arrived here
            return None
        del pending[version]
        st.unanswered_bytes -= out[3]
        return out

    def _cut_off(self, st: StreamState, why: str) -> None:
        """A Gateway that stopped reading: grpc would buffer every update for it, so its stream is ended."""
        import grpc
        if st.session is None or st.session.closed_with is not None:
            return
        metrics.SLOW_CONSUMERS.inc()
        st.session.close(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{why}: this Gateway is not reading its stream; reconnect to resync")

    def check_slow_consumers(self) -> int:
        """Cut off streams whose oldest unanswered update is older than the answer timeout (run every second)."""
        limit = time.monotonic() - self.auth.limits.answer_timeout
        cut = 0
        for st in list(self.streams.values()):
            oldest = min((o[2] for per in st.outstanding.values() for o in per.values()), default=None)
            if oldest is not None and oldest < limit:
                self._cut_off(st, f"an update unanswered for more than {self.auth.limits.answer_timeout:g}s")
                cut += 1
        return cut

    # ---- desired state changes ----
    def notice(self, rtype: str, group_ids: list[int]) -> None:
        for g in group_ids:
            if g in self.by_group or g in self.watch_groups:
                self.dirty.add((rtype, g))
        if self.dirty:
            self._dirty_event.set()

    def _cache_put(self, lv: store.LoadedVersion) -> None:
        key = (lv.resource_type, lv.group_id)
        cur = self.cache.get(key)
        if cur is None or cur.version < lv.version:
            self.cache[key] = lv
            for w in list(self.watchers):
                w(lv)

    async def _debounce_loop(self) -> None:
        while True:
            await self._dirty_event.wait()
            await asyncio.sleep(self.debounce)  # a burst of publishes becomes one push of the newest version
            self._dirty_event.clear()
            keys, self.dirty = sorted(self.dirty), set()
            try:
                loaded = await in_thread(store.load_desired, keys, self.nonce_prefix)
            except Exception:
                logger.exception("loading desired versions failed; the reconcile will retry")
                continue
            for lv in loaded:
                self._cache_put(lv)
                for st in list(self.by_group.get(lv.group_id, ())):
                    self.offer(st, lv)

    async def _watchdog_loop(self) -> None:
        interval = min(1.0, max(0.1, self.auth.limits.answer_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.check_slow_consumers()

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_seconds)
            try:
                await self.reconcile()
            except Exception:
                logger.exception("reconcile failed")

    async def reconcile(self) -> None:
        """The database is the truth: catch versions whose notice was lost, and keep last_seen fresh."""
        await self._check_revocations()
        groups = set(self.by_group) | set(self.watch_groups)
        keys = [(t, g) for g in sorted(groups) for t in RESOURCE_TYPES]
        await in_thread(store.heartbeat, self.replica)
        if not keys:
            return
        newest = await in_thread(store.desired_ids, keys)
        stale = [k for k, vid in newest.items()
                 if k in set(keys) and (k not in self.cache or self.cache[k].version < vid)]
        # also offer cached versions to streams that missed them (e.g. a write raced a reconnect)
        if stale:
            self.dirty.update(stale)
            self._dirty_event.set()

    async def _check_revocations(self) -> None:
        """Backstop for a lost revocation notice: credentials revoked since the last check end their calls."""
        since = self._revocations_checked - timedelta(seconds=5)  # margin for clock skew between hosts
        self._revocations_checked = timezone.now()
        self._built_groups = set()  # groups whose every registered type has a version (checked once)
        for fp in await in_thread(credentials.revoked_since, since):
            self.close_credential(fp, True, "revoked")

    def _on_credentials_notice(self, data: dict[str, Any]) -> None:
        revoked = bool(data.get("revoked"))
        reason = str(data.get("reason", ""))
        for fp in data.get("fingerprints", []):
            self.close_credential(str(fp), revoked, reason)

    async def _redis_loop(self) -> None:
        import redis.asyncio as aioredis
        from django.conf import settings

        backoff = 0.5
        while True:
            try:
                client = aioredis.Redis.from_url(settings.REDIS_URL)
                async with client.pubsub(ignore_subscribe_messages=True) as ps:
                    desired, creds = notify.desired_channel(), notify.credentials_channel()
                    await ps.subscribe(desired, creds)
                    backoff = 0.5
                    async for msg in ps.listen():
                        try:
                            data = json.loads(msg["data"])
                            if msg["channel"].decode() == creds:
                                self._on_credentials_notice(data)
                            else:
                                self.notice(str(data["type"]), [int(g) for g in data["groups"]])
                        except (ValueError, KeyError, TypeError, AttributeError):
                            logger.warning("ignoring malformed push notice")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Redis notices unavailable (%s); reconcile every %ss still delivers",
                               exc, self.reconcile_seconds)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    # ---- batched writes ----
    def record(self, event: store.Event) -> None:
        self._events.append(event)
        self._events_ready.set()

    async def _writer_loop(self) -> None:
        while True:
            await self._events_ready.wait()
            await asyncio.sleep(0.005)  # let a burst of ACKs accumulate into one transaction
            # Building a 1,000-row upsert holds the GIL for tens of milliseconds: wait (briefly) until a fan-out
            # in progress has handed every stream its message, so the flush does not slow the pushes down.
            for _ in range(25):
                if not any(st.queue.qsize() for st in self.streams.values()):
                    break
                await asyncio.sleep(0.01)
            await self._flush()

    async def _flush(self) -> None:
        self._events_ready.clear()
        events, self._events = self._events, []
        if not events:
            return
        types = sorted({e.resource_type for e in events if e.kind in ("ack", "nack")})
        start = time.perf_counter()
        try:
            await in_thread(store.flush_events, events, self.replica)
        except Exception:
            logger.exception("writing %d push events failed; retrying", len(events))
            self._events = events + self._events
            self._events_ready.set()
            await asyncio.sleep(0.5)
            return
        metrics.DB_FLUSH.observe(time.perf_counter() - start)
        if types:
            await in_thread(notify.publish, notify.acks_channel(), {"types": types})
