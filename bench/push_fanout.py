"""Push fan-out benchmark: N concurrent Gateway streams (mTLS), one change published, time until all ACK.

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/gw_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        python bench/push_fanout.py --streams 10000            # --procs auto: one client process per 2,500 streams
    ... python bench/push_fanout.py --streams 2000 --replicas 2   # two run_grpc replicas, one fleet

Runs, in the same conditions (same client processes, same TLS, same bytes):
  1. the real `manage.py run_grpc` (subprocess): publish_desired_state() -> Redis notice -> debounce -> push ->
     ACKs batched into PostgreSQL; latency = client ACK time - publish time, and time until wait_for_acks()
     sees every ACK in the database;
  2. a bare grpc.aio baseline that only holds the streams and writes the same bytes to each one when told.
Also: server RSS per idle stream.

With --replicas 2 (no bare baseline): two run_grpc processes on two ports sharing PostgreSQL and Redis, each
Gateway starting on one of them (i % 2) and knowing both. Three rounds: one publish (all converge); a publish
whose Redis notice replica B never receives (B is stopped with SIGSTOP, its subscriber connection killed in
Redis, the notice published, B resumed: only B's reconcile can deliver); a publish with replica B killed
(SIGKILL) mid-fan-out: its Gateways reconnect to A and must converge there (counted).

The client side holds 10,000 streams on this 2-core machine: every Gateway task connects through a per-process
bound on handshakes in flight (paced waves), retries with exponential backoff and jitter, counts every stream it
loses (code, phase) instead of dying, and the parent reports whatever was collected when a deadline passes.
File limits: RLIMIT_NOFILE is raised to its hard limit in this process, in every client process and (inherited)
in the servers; one stream is one socket on each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BARE_FIRE = "/bench.Bare/Fire"
STREAM = "/gateway_worker.v1.PushService/Stream"


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (a stream is a socket); returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * (len(values) - 1)))] if values else float("nan")


# ---------------- clients ----------------

def client_proc(k: int, ports: list[int], pki: str, first: int, n: int, connect_parallel: int, cmd: mp.Queue,
                out: mp.Queue) -> None:
    """n Gateways (first .. first+n-1), each one TLS channel and one push stream; answers the parent's commands."""
    raise_nofile()
    import grpc
    from gateway_worker.v1 import gateway_worker_pb2 as pb

    ca = Path(pki, "ca.crt").read_bytes()
    keys = {i: (Path(pki, "clients", f"gw-{i}.key").read_bytes(), Path(pki, "clients", f"gw-{i}.crt").read_bytes())
            for i in range(first, first + n)}
    stopping = False
    connected: dict[int, int] = {}                        # gateway -> port of its live stream
    acked: dict[int, dict[str, int]] = {i: {} for i in keys}   # what each Gateway runs (sent in its next Hello)
    acks: dict[int, list[tuple[str, int, float, int]]] = {i: [] for i in keys}  # (type, version, at, port)
    losses: list[tuple[int, int, str, str, float, str]] = []  # (gateway, port, phase, code, at, details)
    connects: list[tuple[int, int, float]] = []           # (gateway, port, at) every stream welcomed

    async def gateway(i: int, sem: asyncio.Semaphore) -> None:
        key, crt = keys[i]
        creds = grpc.ssl_channel_credentials(ca, key, crt)  # one credential per Gateway, as in a real fleet
        at = i % len(ports)
        attempt = 0
        while not stopping:
            port = ports[at]
            phase = "connect"
            await sem.acquire()
            held = True
            ch = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                         options=[("grpc.ssl_target_name_override", "localhost")])
            try:
                call = ch.stream_stream(STREAM, request_serializer=pb.GatewayMessage.SerializeToString,
                                        response_deserializer=pb.WorkerMessage.FromString)()
                await call.write(pb.GatewayMessage(hello=pb.Hello(
                    instance_id=f"gw-{i}", group="bench", agent_version="bench", known_versions=acked[i])))
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        raise ConnectionError("stream ended without a status")
                    kind = msg.WhichOneof("msg")
                    if kind == "welcome":
                        phase = "stream"
                        connected[i] = port
                        connects.append((i, port, time.time()))
                        attempt = 0
                        sem.release()
                        held = False
                        continue
                    u = msg.update
                    await call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version, nonce=u.nonce)))
                    acked[i][u.type] = u.version
                    acks[i].append((u.type, u.version, time.time(), port))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every way a stream ends is counted, none kills the process
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                details = (exc.details() or "") if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                if not stopping:
                    losses.append((i, port, phase, code, time.time(), details[:120]))
            finally:
                connected.pop(i, None)
                if held:
                    sem.release()
                await ch.close(grace=None)
            attempt += 1
            at = (at + 1) % len(ports)  # a lost stream or a failed connect tries the next replica first
            await asyncio.sleep(min(5.0, 0.2 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1.5))

    def answer(what: str, arg: Any) -> Any:
        if what == "status":
            codes: dict[str, int] = {}
            for loss in losses:
                codes[f"{loss[2]}:{loss[3]}"] = codes.get(f"{loss[2]}:{loss[3]}", 0) + 1
            return {"connected": len(connected), "losses": len(losses), "codes": codes,
                    "by_port": {p: sum(1 for v in connected.values() if v == p) for p in ports},
                    "sample": losses[-3:]}
        if what == "where":
            return dict(connected)
        if what == "collect":  # (type, version_min, since): per Gateway its first ACK of >= version_min
            rtype, vmin, since = arg
            first_ack = {}
            for i, rows in acks.items():
                hit = next(((v, t, p) for (ty, v, t, p) in rows if ty == rtype and v >= vmin), None)
                if hit is not None:
                    first_ack[i] = hit
            return {"acks": first_ack, "losses": [x for x in losses if x[4] >= since],
                    "connects": [x for x in connects if x[2] >= since], "connected": dict(connected)}
        raise ValueError(what)

    async def main() -> None:
        nonlocal stopping
        sem = asyncio.Semaphore(connect_parallel)
        tasks = [asyncio.create_task(gateway(i, sem)) for i in keys]
        loop = asyncio.get_running_loop()
        while True:
            what, arg, token = await loop.run_in_executor(None, cmd.get)
            if what == "stop":
                stopping = True
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                out.put((k, token, None))
                return
            if what == "wait":  # (type, version_min, deadline_s): until every Gateway here ACKed, or deadline
                rtype, vmin, deadline = arg
                end = time.monotonic() + deadline
                while time.monotonic() < end and not all(
                        any(ty == rtype and v >= vmin for (ty, v, _t, _p) in rows) for rows in acks.values()):
                    await asyncio.sleep(0.05)
                out.put((k, token, None))
                continue
            out.put((k, token, answer(what, arg)))

    asyncio.run(main())


class Clients:
    """The client processes, and a request/answer channel to all of them."""

    def __init__(self, ports: list[int], pki: str, streams: int, procs: int, connect_parallel: int) -> None:
        ctx = mp.get_context("spawn")
        self.out: mp.Queue = ctx.Queue()
        self.cmds: list[mp.Queue] = []
        self.ps = []
        self.token = 0
        per = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
        for k in range(procs):
            q: mp.Queue = ctx.Queue()
            p = ctx.Process(target=client_proc, args=(k, ports, pki, sum(per[:k]), per[k], connect_parallel, q,
                                                      self.out), daemon=True)
            p.start()
            self.cmds.append(q)
            self.ps.append(p)

    def ask(self, what: str, arg: Any = None, timeout: float = 120.0) -> list[Any]:
        """Every live client process's answer; a process that died or did not answer in time is reported, and
        the answers that came are returned (partial results instead of an exception)."""
        self.token += 1
        live = [k for k, p in enumerate(self.ps) if p.is_alive()]
        dead = [k for k in range(len(self.ps)) if k not in live]
        if dead:
            print(f"  !! client process(es) {dead} died (exit codes {[self.ps[k].exitcode for k in dead]}); "
                  "their Gateways are missing from the figures", flush=True)
        for k in live:
            self.cmds[k].put((what, arg, self.token))
        answers: dict[int, Any] = {}
        end = time.monotonic() + timeout
        while len(answers) < len(live):
            try:
                k, token, ans = self.out.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                print(f"  !! {what}: no answer from client process(es) "
                      f"{sorted(set(live) - set(answers))} within {timeout:.0f}s; reporting what came", flush=True)
                break
            if token == self.token:
                answers[k] = ans
        return [answers[k] for k in sorted(answers)]

    def wait_connected(self, streams: int, deadline: float) -> dict[str, Any]:
        """Until every Gateway holds a stream, or the deadline: the connection storm, paced by the clients."""
        start = time.monotonic()
        last = -1
        while True:
            st = self.ask("status", timeout=30)
            n = sum(s["connected"] for s in st)
            lost = sum(s["losses"] for s in st)
            codes: dict[str, int] = {}
            for s in st:
                for c, m in s["codes"].items():
                    codes[c] = codes.get(c, 0) + m
            took = time.monotonic() - start
            if n != last:
                print(f"  {took:5.1f}s: {n}/{streams} streams, {lost} lost or refused so far {codes or ''}",
                      flush=True)
                last = n
            if n >= streams or took > deadline:
                if n < streams:
                    print(f"  !! only {n}/{streams} streams after {deadline:.0f}s; measuring those "
                          f"(last losses: {[x for s in st for x in s['sample']][:3]})", flush=True)
                return {"connected": n, "connect_s": took, "losses": lost, "codes": codes}
            time.sleep(1.0)

    def where(self) -> dict[int, int]:
        merged: dict[int, int] = {}
        for part in self.ask("where"):
            merged.update(part)
        return merged

    def collect(self, rtype: str, vmin: int, since: float, deadline: float) -> dict[str, Any]:
        self.ask("wait", (rtype, vmin, deadline), timeout=deadline + 30)
        acks: dict[int, tuple[int, float, int]] = {}
        losses: list[Any] = []
        connects: list[Any] = []
        connected: dict[int, int] = {}
        for part in self.ask("collect", (rtype, vmin, since)):
            acks.update(part["acks"])
            losses += part["losses"]
            connects += part["connects"]
            connected.update(part["connected"])
        return {"acks": acks, "losses": losses, "connects": connects, "connected": connected}

    def stop(self) -> None:
        self.ask("stop", timeout=30)
        for p in self.ps:
            p.join(10)
            if p.is_alive():
                p.kill()


def latency(acks: dict[int, tuple[int, float, int]], t0: float, expect: int, label: str) -> dict[str, float]:
    lat = sorted(t - t0 for (_v, t, _p) in acks.values())
    if len(lat) < expect:
        print(f"  !! {label}: {len(lat)}/{expect} Gateways ACKed; figures over those", flush=True)
    return {"n": len(lat), "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * pct(lat, 0.99), "max_ms": 1000 * lat[-1] if lat else float("nan")}


# ---------------- bare baseline ----------------

def bare_server(port: int, pki: str, pending: int) -> None:
    raise_nofile()
    import grpc
    from gateway_worker.v1 import gateway_worker_pb2 as pb

    async def main() -> None:
        queues: list[asyncio.Queue[bytes]] = []

        async def stream(_it, context):  # noqa: ANN001
            q: asyncio.Queue[bytes] = asyncio.Queue()
            await context.read()  # Hello
            await context.write(pb.WorkerMessage(welcome=pb.Welcome(replica="bare")).SerializeToString())
            queues.append(q)

            async def reader() -> None:
                while await context.read() is not grpc.aio.EOF:
                    pass
            r = asyncio.create_task(reader())
            try:
                while True:
                    await context.write(await q.get())
            finally:
                r.cancel()
                queues.remove(q)

        async def fire(req: bytes, context) -> bytes:  # noqa: ANN001
            for q in queues:
                q.put_nowait(req)
            return b""

        ident = lambda b: b  # noqa: E731
        # the same call backlog as run_grpc (GRPC_MAX_PENDING_CALLS): both sides face the same connection storm
        server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000),
                                          ("grpc.server.max_pending_requests", pending),
                                          ("grpc.server.max_pending_requests_hard_limit", pending)])
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("gateway_worker.v1.PushService", {
                "Stream": grpc.stream_stream_rpc_method_handler(stream, ident, ident)}),
            grpc.method_handlers_generic_handler("bench.Bare", {
                "Fire": grpc.unary_unary_rpc_method_handler(fire, ident, ident)}),
        ])
        creds = grpc.ssl_server_credentials([(Path(pki, "server.key").read_bytes(),
                                              Path(pki, "server.crt").read_bytes())],
                                            Path(pki, "ca.crt").read_bytes(), True)
        server.add_secure_port(f"127.0.0.1:{port}", creds)
        await server.start()
        print("bare listening", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


# ---------------- certificates, cached ----------------

def _issue_range(pki: str, first: int, n: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from gateways import pki as gpki
    ca_pem = Path(pki, "ca.crt").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(Path(pki, "ca.key").read_bytes(), None)
    for i in range(first, first + n):
        gpki.write_bundle(Path(pki, "clients"), f"gw-{i}", gpki.issue(ca_cert, ca_key, f"gw-{i}"),
                          ca_pem)


def ensure_pki(cache: Path, streams: int) -> list[dict[str, Any]]:
    """CA, server certificate and gw-0 .. gw-{streams-1}, generated once into `cache` and reused; returns each
    client certificate's serial, fingerprint and expiry (for the credentials)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from gateways import pki as gpki
    cache.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = gpki.ensure_ca(cache / "ca.crt", cache / "ca.key")
    if not (cache / "server.crt").exists():
        gpki.write_bundle(cache, "server", gpki.issue(ca_cert, ca_key, "worker", server=True),
                          (cache / "ca.crt").read_bytes())
    manifest_path = cache / "manifest.json"
    manifest: list[dict[str, Any]] = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    have = len(manifest)
    if have < streams:
        start = time.monotonic()
        missing = streams - have
        workers = min(os.cpu_count() or 1, max(1, missing // 500))
        per = [missing // workers + (1 if w < missing % workers else 0) for w in range(workers)]
        ctx = mp.get_context("fork")
        ps = [ctx.Process(target=_issue_range, args=(str(cache), have + sum(per[:w]), per[w]))
              for w in range(workers)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        for i in range(have, streams):
            cert = x509.load_pem_x509_certificate((cache / "clients" / f"gw-{i}.crt").read_bytes())
            manifest.append({"serial": format(cert.serial_number, "x"),
                             "fp": cert.fingerprint(hashes.SHA256()).hex(),
                             "not_after": cert.not_valid_after_utc.isoformat()})
        manifest_path.write_text(json.dumps(manifest))
        print(f"issued {missing} client certificates in {time.monotonic() - start:.1f}s into {cache}", flush=True)
    else:
        print(f"reusing {streams} cached client certificates from {cache}", flush=True)
    return manifest[:streams]


# ---------------- orchestration ----------------

def start_run_grpc(pki: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRPC_TLS_CERT": f"{pki}/server.crt", "GRPC_TLS_KEY": f"{pki}/server.key",
           "GRPC_CA_CERT": f"{pki}/ca.crt", "GRPC_INSECURE": "false",
           # as in production: with DEBUG on (WORKER_ENV=test's default) Django keeps a log of every query on each
           # thread's connection, ~4 KiB per connected stream in this benchmark
           "DEBUG": "false", **extra_env}
    srv = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "run_grpc", "--bind", f"127.0.0.1:{port}",
                            "--metrics-port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert srv.stdout is not None
    line = srv.stdout.readline()
    if b"listening" not in line:
        raise RuntimeError(f"run_grpc did not start: {line!r}")
    return srv


def settle(clients: Clients, seconds: float = 2.0) -> None:
    time.sleep(seconds)  # initial pushes ACKed, ACK writes flushed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=0, help="client processes (0: one per 2,500 streams, at least 2)")
    ap.add_argument("--connect-parallel", type=int, default=64,
                    help="TLS handshakes in flight per client process (the pacing of the connection storm)")
    ap.add_argument("--connect-deadline", type=float, default=0,
                    help="seconds to wait for every stream (0: 60 + streams/50)")
    ap.add_argument("--replicas", type=int, default=1, choices=(1, 2))
    ap.add_argument("--kill-after-ms", type=float, default=100,
                    help="--replicas 2: SIGKILL replica B this long after the publish")
    ap.add_argument("--reconcile-seconds", type=float, default=2.0, help="--replicas 2: PUSH_RECONCILE_SECONDS")
    ap.add_argument("--skip-bare", action="store_true")
    ap.add_argument("--pki-cache", default=str(ROOT / "var" / "bench" / "push-pki"))
    ap.add_argument("--bare-server", nargs=3, metavar=("PORT", "PKI", "PENDING"))
    args = ap.parse_args()
    nofile = raise_nofile()
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1], int(args.bare_server[2]))
        return
    procs = args.procs or max(2, -(-args.streams // 2500))
    deadline = args.connect_deadline or 60 + args.streams / 50

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    import django
    django.setup()
    import grpc
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from gateway_worker.v1 import gateway_worker_pb2 as pb

    from gateways.models import GatewayCredential, GatewayGroup, GatewayInstance
    from gateways.services import publish_desired_state, register_resource, wait_for_acks

    print(f"RLIMIT_NOFILE raised to {nofile[0]} (hard {nofile[1]}) here, in the client processes and the servers",
          flush=True)
    call_command("migrate", verbosity=0)
    pki = Path(args.pki_cache)
    manifest = ensure_pki(pki, args.streams)
    import datetime as dt
    GatewayInstance.objects.filter(group__name="bench").delete()
    GatewayCredential.objects.filter(group__name="bench").delete()
    group, _ = GatewayGroup.objects.get_or_create(name="bench")
    # One client certificate and credential per simulated Gateway: the server derives each one's identity and
    # group from it on every RPC, so the trust checks are in the measured path.
    start = time.monotonic()
    GatewayCredential.objects.bulk_create(
        [GatewayCredential(name=f"gw-{i}", group=group, serial=m["serial"], fingerprint_sha256=m["fp"],
                           not_after=dt.datetime.fromisoformat(m["not_after"])) for i, m in enumerate(manifest)],
        batch_size=2000)
    print(f"{args.streams} credentials inserted in {time.monotonic() - start:.1f}s", flush=True)
    counter = {"n": 0}
    # a rule file the Gateway's loader accepts (the publish seam validates it), padded with a 2 KB comment
    register_resource("waf_rules", lambda g: {
        "name": "waf-rules.yaml", "content": f"# bench {counter['n']}\nversion: \"1.0\"\nrules: []\n# {'x' * 2000}\n"})
    publish_desired_state("waf_rules", group)

    def publish() -> tuple[float, Any]:
        counter["n"] += 1
        connection.close()
        t0 = time.time()
        (v,) = publish_desired_state("waf_rules", group)
        return t0, v

    print(f"\n{args.streams} streams, {procs} client processes ({args.connect_parallel} handshakes in flight each), "
          f"{os.cpu_count()} CPUs, {args.replicas} replica(s)", flush=True)
    if args.replicas == 2:
        two_replicas(args, pki, procs, deadline, publish, wait_for_acks, settings)
        return

    results: dict[str, dict[str, Any]] = {}
    # 1. the real run_grpc
    port = free_port()
    srv = start_run_grpc(pki, port, {})
    base_rss = rss_kib(srv.pid)
    clients = Clients([port], str(pki), args.streams, procs, args.connect_parallel)
    try:
        print("run_grpc: connecting", flush=True)
        conn = clients.wait_connected(args.streams, deadline)
        settle(clients)
        idle = (rss_kib(srv.pid) - base_rss) / max(1, conn["connected"])
        t0, v = publish()
        res = wait_for_acks([v], timeout=120)
        db_ms = 1000 * (time.time() - t0)
        if not res.ok:
            print(f"  !! wait_for_acks: {res}", flush=True)
        got = clients.collect("waf_rules", v.pk, t0, deadline=60)
        results["run_grpc (mTLS, DB, Redis)"] = {**latency(got["acks"], t0, args.streams, "run_grpc"), **conn,
                                                "db_ms": db_ms if res.ok else float("nan"), "idle_kib": idle,
                                                "lost_after": len(got["losses"])}
    finally:
        clients.stop()
        srv.terminate()
        srv.wait(60)

    # 2. the bare baseline, same clients and bytes
    if not args.skip_bare:
        bport = free_port()
        bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bport), str(pki),
                                 str(settings.GRPC_MAX_PENDING_CALLS)], stdout=subprocess.PIPE)
        assert bare.stdout is not None
        bare.stdout.readline()
        bare_base = rss_kib(bare.pid)
        payload = pb.WorkerMessage(update=pb.ResourceUpdate(
            type="waf_rules", version=999999, nonce="x", waf_rules=pb.FileContent(content="x" * 2000))
        ).SerializeToString()
        clients = Clients([bport], str(pki), args.streams, procs, args.connect_parallel)
        try:
            print("bare: connecting", flush=True)
            conn = clients.wait_connected(args.streams, deadline)
            settle(clients)
            idle = (rss_kib(bare.pid) - bare_base) / max(1, conn["connected"])
            creds = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(),
                                                 (pki / "clients" / "gw-0.key").read_bytes(),
                                                 (pki / "clients" / "gw-0.crt").read_bytes())
            with grpc.secure_channel(f"127.0.0.1:{bport}", creds,
                                     options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
                fire = ch.unary_unary(BARE_FIRE, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                t0 = time.time()
                fire(payload, timeout=30)
            got = clients.collect("waf_rules", 999999, t0, deadline=60)
            results["bare grpc.aio baseline"] = {**latency(got["acks"], t0, args.streams, "bare"), **conn,
                                                 "db_ms": float("nan"), "idle_kib": idle,
                                                 "lost_after": len(got["losses"])}
        finally:
            clients.stop()
            bare.terminate()
            bare.wait(60)

    print(f"\n{args.streams} streams, {procs} client processes, {os.cpu_count()} CPUs\n")
    print("| server | streams held | connect storm (s, lost/refused) | ACK p50 | ACK p99 | max | all ACKs in DB | "
          "RSS per idle stream |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['connected']}/{args.streams} ({r['n']} ACKed, {r['lost_after']} lost after the "
              f"publish) | {r['connect_s']:.0f} s, "
              f"{r['losses']} {r['codes'] or ''} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
              f"{r['max_ms']:.0f} ms | {r['db_ms']:.0f} ms | {r['idle_kib']:.1f} KiB |")
    if len(results) == 2:
        real, base = results.values()
        print(f"\nratio run_grpc/bare: p50 {real['p50_ms'] / base['p50_ms']:.2f}x, "
              f"p99 {real['p99_ms'] / base['p99_ms']:.2f}x")


# ---------------- two replicas ----------------

def _redis_subscribers_of(pid: int, redis_client: Any) -> list[str]:
    """Redis client addresses (ip:port) of the pub/sub connections that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    local_ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[9] in inodes:
            local_ports.add(int(parts[1].split(":")[1], 16))
    return [c["addr"] for c in redis_client.client_list(_type="pubsub")
            if int(c["addr"].rsplit(":", 1)[1]) in local_ports]


def two_replicas(args: argparse.Namespace, pki: Path, procs: int, deadline: float, publish: Any,
                 wait_for_acks: Any, settings: Any) -> None:
    import redis

    from gateways import notify
    env = {"PUSH_RECONCILE_SECONDS": str(args.reconcile_seconds)}
    ports = [free_port(), free_port()]
    a, b = start_run_grpc(pki, ports[0], env), start_run_grpc(pki, ports[1], env)
    clients = Clients(ports, str(pki), args.streams, procs, args.connect_parallel)
    r = redis.Redis.from_url(settings.REDIS_URL)
    rows: list[str] = []
    try:
        print("two replicas: connecting", flush=True)
        conn = clients.wait_connected(args.streams, deadline)
        settle(clients)
        where = clients.where()
        on_b = {i for i, p in where.items() if p == ports[1]}
        print(f"  streams on A {len(where) - len(on_b)}, on B {len(on_b)}", flush=True)

        # 1. one publish converges both replicas' Gateways
        t0, v = publish()
        res = wait_for_acks([v], timeout=120)
        db_ms = 1000 * (time.time() - t0)
        got = clients.collect("waf_rules", v.pk, t0, deadline=60)
        lat = latency(got["acks"], t0, conn["connected"], "publish, two replicas")
        rows.append(f"| one publish, both replicas | {lat['n']}/{conn['connected']} ACKed | {lat['p50_ms']:.0f} ms | "
                    f"{lat['p99_ms']:.0f} ms | {lat['max_ms']:.0f} ms | all in DB after "
                    f"{db_ms if res.ok else float('nan'):.0f} ms |")

        # 2. B never receives the notice: only its reconcile (PUSH_RECONCILE_SECONDS) delivers
        settle(clients, 1.0)
        os.kill(b.pid, signal.SIGSTOP)
        try:
            killed = _redis_subscribers_of(b.pid, r)
            for addr in killed:
                r.client_kill(addr)
            subscribers = r.pubsub_numsub(notify.desired_channel())[0][1]
            t0, v = publish()
            time.sleep(0.3)
        finally:
            os.kill(b.pid, signal.SIGCONT)
        got = clients.collect("waf_rules", v.pk, t0, deadline=60)
        on_b_now = {i for i, p in got["connected"].items() if p == ports[1]}
        lat_a = latency({i: x for i, x in got["acks"].items() if i not in on_b_now}, t0,
                        conn["connected"] - len(on_b_now), "notice kept (A)")
        lat_b = latency({i: x for i, x in got["acks"].items() if i in on_b_now}, t0, len(on_b_now),
                        "notice lost (B)")
        print(f"  notice round: killed B's subscriber connection(s) {killed}; the desired channel had "
              f"{subscribers} subscriber(s) when the notice went out", flush=True)
        rows.append(f"| notice lost on B (subscribers at publish: {subscribers}), reconcile every "
                    f"{args.reconcile_seconds:g} s | A {lat_a['n']}, B {lat_b['n']}/{len(on_b_now)} ACKed | "
                    f"A {lat_a['p50_ms']:.0f} / B {lat_b['p50_ms']:.0f} ms | A {lat_a['p99_ms']:.0f} / "
                    f"B {lat_b['p99_ms']:.0f} ms | B {lat_b['max_ms']:.0f} ms | |")

        # 3. B killed mid-fan-out: its Gateways reconnect to A and converge there
        settle(clients, 1.0)
        where = clients.where()
        on_b = {i for i, p in where.items() if p == ports[1]}
        t0, v = publish()
        time.sleep(args.kill_after_ms / 1000)
        t_kill = time.time()
        b.kill()
        b.wait()
        got = clients.collect("waf_rules", v.pk, t0, deadline=120)
        # ACKed on B: B wrote the update before it died (the client may read and answer it after t_kill)
        acked_before = {i for i in on_b if i in got["acks"] and got["acks"][i][2] == ports[1]}
        moved = {i for i in on_b if got["connected"].get(i) == ports[0]}
        reconverged = sorted(got["acks"][i][1] - t_kill for i in on_b - acked_before
                             if i in got["acks"] and got["acks"][i][2] == ports[0])
        reconnect = sorted(min(t for (g, p, t) in got["connects"] if g == i and p == ports[0] and t >= t_kill) - t_kill
                           for i in moved if any(g == i and p == ports[0] and t >= t_kill
                                                 for (g, p, t) in got["connects"]))
        codes: dict[str, int] = {}
        for x in got["losses"]:
            if x[1] == ports[1]:
                codes[f"{x[2]}:{x[3]}"] = codes.get(f"{x[2]}:{x[3]}", 0) + 1
        all_lat = latency(got["acks"], t0, conn["connected"], "kill round")
        print(f"  kill round: B held {len(on_b)} streams; {len(acked_before)} got the update from B before it died "
              f"({args.kill_after_ms:g} ms after the publish); {len(moved)} now on A; streams lost on B {codes}",
              flush=True)
        rows.append(
            f"| B SIGKILLed {args.kill_after_ms:g} ms after the publish | {all_lat['n']}/{conn['connected']} ACKed; "
            f"of B's {len(on_b)}: {len(acked_before)} got it from B before it died, {len(reconverged)} reconnected to "
            f"A and ACKed there, {len(on_b) - len(acked_before) - len(reconverged)} did not | reconnect p50 "
            f"{1000 * pct(reconnect, 0.5):.0f} ms after the kill | reconverged p50 {1000 * pct(reconverged, 0.5):.0f} "
            f"/ p99 {1000 * pct(reconverged, 0.99):.0f} ms after the kill | last "
            f"{1000 * reconverged[-1] if reconverged else float('nan'):.0f} ms | |")
    finally:
        clients.stop()
        for p in (a, b):
            if p.poll() is None:
                p.terminate()
                p.wait(60)
    print(f"\n{args.streams} streams on two replicas, {procs} client processes, {os.cpu_count()} CPUs\n")
    print("| round | Gateways | p50 | p99 | max | |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
