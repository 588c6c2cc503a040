"""The trust boundary of run_grpc: every RPC of every service is wrapped here before its servicer runs.

For each call the wrapper
- identifies the caller from its verified client certificate only (fingerprint -> GatewayCredential, cached for
  a few seconds, dropped at once on a revocation notice) and refuses unknown and revoked certificates;
- bounds what one credential may use: streaming RPCs open at once (per replica), unary calls per second, and the
  size of each request message per method;
- parses requests itself, so garbage answers INVALID_ARGUMENT with a short text instead of a server traceback;
- registers each streaming call as a ``Session`` that the hub can close (revocation, a move to another group,
  a Gateway that stops reading).

Servicers read the caller with ``current_identity()`` / ``current_session()``. In plaintext development mode
(GRPC_INSECURE) there is no certificate: the identity is None and servicers fall back to what the message says.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from . import credentials, metrics
from .credentials import Identity

logger = logging.getLogger(__name__)

_IDENTITY: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("gw_identity", default=None)
_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("gw_session", default=None)


class StreamError(Exception):
    """End the current call with ``code`` and a short, client-facing ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def clip(value: object, limit: int = 64) -> str:
    """``repr`` of client-sent text for an error message, never longer than ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def current_identity() -> Identity | None:
    return _IDENTITY.get()


def current_session() -> Session | None:
    return _SESSION.get()


@dataclass(frozen=True)
class Limits:
    max_streams_per_credential: int = 8
    unary_rate: float = 20.0                       # calls per second per credential; the burst is twice that
    unanswered_max_bytes: int = 64 * 1024 * 1024   # updates sent on a stream and neither ACKed nor NACKed ...
    answer_timeout: float = 120.0                  # ... or the oldest of them this old: the Gateway stopped reading
    credential_cache_seconds: float = 5.0
    default_request_bytes: int = 64 * 1024
    request_bytes: dict[str, int] = field(default_factory=dict)  # "/pkg.Service/Method" -> limit per message

    def for_method(self, method: str) -> int:
        return self.request_bytes.get(method, self.default_request_bytes)


@dataclass(eq=False)
class Session:
    """One open streaming call. ``close`` ends it from outside (the hub): first politely through ``on_close``
    (the servicer turns it into a status), then, if the call is stuck in a write, by cancelling its task."""

    identity: Identity | None
    method: str
    task: asyncio.Task[Any] | None
    on_close: Callable[[StreamError], None] | None = None
    closed_with: StreamError | None = None

    def close(self, code: grpc.StatusCode, details: str, grace: float = 1.0) -> None:
        if self.closed_with is not None:
            return
        self.closed_with = StreamError(code, details)
        if self.on_close is not None:
            self.on_close(self.closed_with)
        if self.task is not None and not self.task.done():
            asyncio.get_running_loop().call_later(grace, self._force)

    def _force(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Sessions:
    """Open streaming calls of this replica, by credential fingerprint (the streams gauge lives here only)."""

    def __init__(self) -> None:
        self._by_fp: dict[str, set[Session]] = {}
        self._count = 0

    def add(self, session: Session) -> None:
        key = session.identity.fingerprint if session.identity else ""
        self._by_fp.setdefault(key, set()).add(session)
        self._count += 1
        metrics.STREAMS.inc()

    def remove(self, session: Session) -> None:
        key = session.identity.fingerprint if session.identity else ""
        group = self._by_fp.get(key)
        if group is None or session not in group:
            return  # removed once only: the gauge can never go below what is open
        group.discard(session)
        if not group:
            del self._by_fp[key]
        self._count -= 1
        metrics.STREAMS.dec()

    def count(self, fingerprint: str) -> int:
        return len(self._by_fp.get(fingerprint, ()))

    def of(self, fingerprint: str) -> list[Session]:
        return list(self._by_fp.get(fingerprint, ()))

    def fingerprints(self) -> list[str]:
        return [fp for fp in self._by_fp if fp]

    def __len__(self) -> int:
        return self._count


class Authenticator:
    def __init__(self, *, insecure: bool, limits: Limits, lookup: Callable[[str], Identity | str] | None = None,
                 run: Callable[..., Any] | None = None) -> None:
        from .hub import in_thread

        self.insecure = insecure
        self.limits = limits
        self.sessions = Sessions()
        self._lookup = lookup or credentials.identity_for
        self._run = run or in_thread
        self._cache: dict[str, tuple[float, Identity | str]] = {}
        self._fingerprints: dict[bytes, str] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # fingerprint -> (tokens, at)

    # ---- identity ----
    async def identify(self, context: grpc.aio.ServicerContext) -> Identity | None:
        if self.insecure:
            return None
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            raise StreamError(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        fp = self._fingerprint(next(iter(pems)))
        now = time.monotonic()
        hit = self._cache.get(fp)
        if hit is None or hit[0] < now:
            found = await self._run(self._lookup, fp)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[fp] = (now + self.limits.credential_cache_seconds, found)
            hit = self._cache[fp]
        if isinstance(hit[1], str):
            metrics.REFUSED_CALLS.labels("credential").inc()
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, hit[1])
        return hit[1]

    def _fingerprint(self, pem: bytes) -> str:
        fp = self._fingerprints.get(pem)
        if fp is None:
            from . import pki
            fp = pki.fingerprint_of_pem(pem)
            if len(self._fingerprints) > 50_000:
                self._fingerprints.clear()
            self._fingerprints[pem] = fp
        return fp

    def forget(self, fingerprints: Iterable[str]) -> None:
        for fp in fingerprints:
            self._cache.pop(fp, None)

    # ---- bounds ----
    def _take_token(self, ident: Identity | None) -> None:
        if ident is None or self.limits.unary_rate <= 0:
            return
        now = time.monotonic()
        burst = 2 * self.limits.unary_rate
        tokens, at = self._buckets.get(ident.fingerprint, (burst, now))
        tokens = min(burst, tokens + (now - at) * self.limits.unary_rate)
        if tokens < 1:
            metrics.REFUSED_CALLS.labels("rate").inc()
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"more than {self.limits.unary_rate:g} calls per second from this Gateway; slow down")
        self._buckets[ident.fingerprint] = (tokens - 1, now)

    def _open_session(self, ident: Identity | None, method: str) -> Session:
        if ident is not None and self.sessions.count(ident.fingerprint) >= self.limits.max_streams_per_credential:
            metrics.REFUSED_CALLS.labels("streams").inc()
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"this Gateway already has {self.limits.max_streams_per_credential} streams open "
                              "on this replica (GRPC_MAX_STREAMS_PER_CREDENTIAL)")
        session = Session(ident, method, asyncio.current_task())
        self.sessions.add(session)
        return session

    def close_credential(self, fingerprint: str, code: grpc.StatusCode, details: str) -> int:
        self.forget([fingerprint])
        victims = self.sessions.of(fingerprint)
        for s in victims:
            s.close(code, details)
        return len(victims)

    # ---- wrapping handlers ----
    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        limit = self.limits.for_method(method)
        deserialize = handler.request_deserializer or (lambda b: b)
        serialize = handler.response_serializer
        if not handler.request_streaming:
            behavior = handler.unary_unary or handler.unary_stream
            parse = _unary_parser(method, deserialize, limit)
            if handler.response_streaming:
                return grpc.unary_stream_rpc_method_handler(
                    self._session_call(method, behavior, parse), response_serializer=serialize)
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(method, behavior, parse), response_serializer=serialize)
        behavior = handler.stream_unary or handler.stream_stream
        messages = _stream_parser(method, deserialize, limit)
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._session_call(method, behavior, messages), response_serializer=serialize)
        return grpc.stream_unary_rpc_method_handler(
            self._session_call(method, behavior, messages), response_serializer=serialize)

    def _unary_unary(self, method: str, behavior: Any, parse: Any) -> Any:
        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                ident = await self.identify(context)
                self._take_token(ident)
                request = parse(raw)
                _IDENTITY.set(ident)
                return await behavior(request, context)
            except StreamError as exc:
                await _abort(context, exc)
        return call

    def _session_call(self, method: str, behavior: Any, to_request: Callable[[Any], Any]) -> Any:
        """Every call that holds a session (a response stream, a request stream, or both): identify, open the
        session, hand the behavior its request (``to_request`` parses a unary request or wraps the request
        iterator), and close the session whatever happens. Coroutine and generator behaviors alike."""
        async def open_(arg: Any, context: grpc.aio.ServicerContext, box: list[Session]) -> Any:
            ident = await self.identify(context)
            request = to_request(arg)
            session = self._open_session(ident, method)
            box.append(session)
            _IDENTITY.set(ident)
            _SESSION.set(session)
            return request

        if inspect.isasyncgenfunction(behavior):
            async def gen_call(arg: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                box: list[Session] = []
                try:
                    request = await open_(arg, context, box)
                    async for item in behavior(request, context):
                        yield item
                except StreamError as exc:
                    await _abort(context, exc)
                except asyncio.CancelledError:
                    await self._closed(context, box)
                finally:
                    self._release(box)
            return gen_call

        async def co_call(arg: Any, context: grpc.aio.ServicerContext) -> Any:
            box: list[Session] = []
            try:
                request = await open_(arg, context, box)
                return await behavior(request, context)
            except StreamError as exc:
                await _abort(context, exc)
            except asyncio.CancelledError:
                await self._closed(context, box)
            finally:
                self._release(box)
        return co_call

    async def _closed(self, context: grpc.aio.ServicerContext, box: list[Session]) -> None:
        """The call's task was cancelled: by the hub closing its session (answer its status), or by grpc."""
        if not box or box[0].closed_with is None:
            raise asyncio.CancelledError
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        await _abort(context, box[0].closed_with)

    def _release(self, box: list[Session]) -> None:
        if box:
            self.sessions.remove(box[0])


async def _abort(context: grpc.aio.ServicerContext, exc: StreamError) -> None:
    metrics.REJECTED_STREAMS.labels(exc.code.name).inc()
    await context.abort(exc.code, exc.details[:500])


def _unary_parser(method: str, deserialize: Callable[[bytes], Any], limit: int) -> Callable[[bytes], Any]:
    # "malformed GatewayMessage" reads better than the method name when the message type is known
    name = getattr(getattr(deserialize, "__self__", None), "__name__", "") or method.rsplit("/", 1)[-1] + " request"

    def parse(raw: bytes) -> Any:
        if len(raw) > limit:
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{name} of {len(raw)} bytes is over this method's limit of {limit} bytes")
        try:
            return deserialize(raw)
        except Exception:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"malformed {name}: not a valid protobuf message") from None
    return parse


def _stream_parser(method: str, deserialize: Callable[[bytes], Any],
                   limit: int) -> Callable[[AsyncIterator[bytes]], AsyncIterator[Any]]:
    parse = _unary_parser(method, deserialize, limit)

    async def messages(raw_iter: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in raw_iter:
            yield parse(raw)
    return messages


class GuardedServer:
    """Stands in for the grpc.aio server while services register: every handler they add is wrapped."""

    def __init__(self, server: grpc.aio.Server, auth: Authenticator) -> None:
        self._server = server
        self._auth = auth

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_GuardedGeneric(h, self._auth) for h in handlers])

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        # Registered handlers take precedence over generic ones in grpc: register the wrapped versions.
        wrapped = {m: self._auth.wrap(f"/{service}/{m}", h) for m, h in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, auth: Authenticator) -> None:
        self._inner = inner
        self._auth = auth
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in self._wrapped:
            inner = self._inner.service(handler_call_details)
            if inner is None:
                return None
            self._wrapped[method] = self._auth.wrap(method, inner)
        return self._wrapped[method]
