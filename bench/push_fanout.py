"""Push fan-out benchmark: N concurrent Gateway streams (mTLS), one change published, time until all ACK.

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/gw_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        python bench/push_fanout.py --streams 1000 --procs 4

Runs, in the same conditions (same client processes, same TLS, same bytes):
  1. the real `manage.py run_grpc` (subprocess): publish_desired_state() -> Redis notice -> debounce -> push ->
     ACKs batched into PostgreSQL; latency = client ACK time - publish time, and time until wait_for_acks()
     sees every ACK in the database;
  2. a bare grpc.aio baseline that only holds the streams and writes the same bytes to each one when told.
Also: server RSS per idle stream. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BARE_FIRE = "/bench.Bare/Fire"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------- clients ----------------

def client_proc(port: int, pki: str, first: int, n: int, ready: mp.Queue, go_report: mp.Event,
                out: mp.Queue) -> None:
    import grpc
    from gateway_worker.v1 import gateway_worker_pb2 as pb

    ca = Path(pki, "ca.crt").read_bytes()

    def creds_of(i: int) -> grpc.ChannelCredentials:  # one credential per Gateway, as in a real fleet
        return grpc.ssl_channel_credentials(ca, Path(pki, "clients", f"gw-{i}.key").read_bytes(),
                                            Path(pki, "clients", f"gw-{i}.crt").read_bytes())

    async def main() -> None:
        acks: list[tuple[str, int, float]] = []
        welcomed = 0
        all_in = asyncio.Event()

        async def one(i: int) -> None:
            nonlocal welcomed
            ch = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds_of(first + i),
                                         options=[("grpc.ssl_target_name_override", "localhost")])
            call = ch.stream_stream("/gateway_worker.v1.PushService/Stream",
                                    request_serializer=pb.GatewayMessage.SerializeToString,
                                    response_deserializer=pb.WorkerMessage.FromString)()
            await call.write(pb.GatewayMessage(hello=pb.Hello(instance_id=f"gw-{first + i}", group="bench",
                                                              agent_version="bench")))
            async for msg in call:
                if msg.WhichOneof("msg") == "welcome":
                    welcomed += 1
                    if welcomed == n:
                        all_in.set()
                    continue
                u = msg.update
                await call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version, nonce=u.nonce)))
                acks.append((u.type, u.version, time.time()))

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        waiter = asyncio.create_task(all_in.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:  # a stream failed before every stream was in: show why
            for t in done:
                t.result()
        await asyncio.sleep(1.0)  # initial pushes done
        ready.put(n)
        while not go_report.is_set():
            await asyncio.sleep(0.05)
        out.put(acks)
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def run_clients(port: int, pki: str, streams: int, procs: int, fire, label: str) -> dict[str, float]:
    """Connect `streams` clients, call fire() -> (t0, version, db_wait_seconds|None), collect ACK latencies."""
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    ps = [ctx.Process(target=client_proc, args=(port, pki, firsts[i], k, ready, go, out)) for i, k in
          enumerate(per)]
    for p in ps:
        p.start()
    connected = sum(ready.get(timeout=120) for _ in ps)
    assert connected == streams
    t0, version, db_wait, idle_rss = fire()
    time.sleep(0.5 if db_wait is not None else 3.0)
    go.set()
    lat = []
    for _ in ps:
        for _type, v, t in out.get(timeout=120):
            if v == version:
                lat.append(t - t0)
    for p in ps:
        p.join(30)
    lat.sort()
    assert len(lat) == streams, f"{label}: {len(lat)}/{streams} ACKed version {version}"
    return {"p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
            "max_ms": 1000 * lat[-1], "db_all_acked_ms": 1000 * db_wait if db_wait is not None else float("nan"),
            "idle_rss_kib": idle_rss}


# ---------------- bare baseline ----------------

def bare_server(port: int, pki: str) -> None:
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

        async def fire(req: bytes, context) -> bytes:  # noqa: ANN001
            for q in queues:
                q.put_nowait(req)
            return b""

        ident = lambda b: b  # noqa: E731
        server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
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
        await server.wait_for_termination()

    asyncio.run(main())


# ---------------- orchestration ----------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--bare-server", nargs=2, metavar=("PORT", "PKI"))
    args = ap.parse_args()
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1])
        return

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    import django
    django.setup()
    import grpc
    from django.core.management import call_command
    from django.db import connection
    from gateway_worker.v1 import gateway_worker_pb2 as pb

    from gateways import pki as gpki
    from gateways.models import GatewayCredential, GatewayGroup, GatewayInstance
    from gateways.services import publish_desired_state, register_resource, wait_for_acks

    call_command("migrate", verbosity=0)
    tmp = tempfile.mkdtemp(prefix="push-bench-")
    ca_cert, ca_key = gpki.ensure_ca(Path(tmp, "ca.crt"), Path(tmp, "ca.key"))
    ca_pem = Path(tmp, "ca.crt").read_bytes()
    gpki.write_bundle(Path(tmp), "server", gpki.issue(ca_cert, ca_key, "worker", server=True), ca_pem)
    GatewayInstance.objects.filter(group__name="bench").delete()
    GatewayCredential.objects.filter(group__name="bench").delete()
    group, _ = GatewayGroup.objects.get_or_create(name="bench")
    # One client certificate and credential per simulated Gateway: the server derives each one's identity and
    # group from it on every RPC, so the trust checks are in the measured path.
    creds = []
    for i in range(args.streams):
        issued = gpki.issue(ca_cert, ca_key, f"gw-{i}")
        gpki.write_bundle(Path(tmp, "clients"), f"gw-{i}", issued, ca_pem)
        creds.append(GatewayCredential(name=f"gw-{i}", group=group, serial=issued.serial,
                                       fingerprint_sha256=issued.fingerprint_sha256, not_after=issued.not_after))
    GatewayCredential.objects.bulk_create(creds, batch_size=1000)
    counter = {"n": 0}
    # a rule file the Gateway's loader accepts (the publish seam validates it), padded with a 2 KB comment
    register_resource("waf_rules", lambda g: {
        "name": "waf-rules.yaml", "content": f"# bench {counter['n']}\nversion: \"1.0\"\nrules: []\n# {'x' * 2000}\n"})
    publish_desired_state("waf_rules", group)

    results = {}
    # 1. the real run_grpc
    port = free_port()
    env = {**os.environ, "GRPC_TLS_CERT": f"{tmp}/server.crt", "GRPC_TLS_KEY": f"{tmp}/server.key",
           "GRPC_CA_CERT": f"{tmp}/ca.crt", "GRPC_INSECURE": "false"}
    srv = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "run_grpc", "--bind", f"127.0.0.1:{port}",
                            "--metrics-port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert srv.stdout is not None
    srv.stdout.readline()
    base_rss = rss_kib(srv.pid)

    def fire_real():  # noqa: ANN202
        idle = (rss_kib(srv.pid) - base_rss) / args.streams
        counter["n"] += 1
        connection.close()
        t0 = time.time()
        (v,) = publish_desired_state("waf_rules", group)
        res = wait_for_acks([v], timeout=60)
        assert res.ok, res
        return t0, v.pk, time.time() - t0, idle

    try:
        results["run_grpc (mTLS, DB, Redis)"] = run_clients(port, tmp, args.streams, args.procs, fire_real, "real")
    finally:
        srv.terminate()
        srv.wait(30)

    # 2. the bare baseline, same clients and bytes
    bport = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bport), tmp])
    time.sleep(1.5)
    bare_base = rss_kib(bare.pid)
    payload = pb.WorkerMessage(update=pb.ResourceUpdate(type="waf_rules", version=999999, nonce="x", waf_rules=pb.
                                                        FileContent(content="x" * 2000))).SerializeToString()

    def fire_bare():  # noqa: ANN202
        idle = (rss_kib(bare.pid) - bare_base) / args.streams
        creds = grpc.ssl_channel_credentials(Path(tmp, "ca.crt").read_bytes(),
                                             Path(tmp, "clients", "gw-0.key").read_bytes(),
                                             Path(tmp, "clients", "gw-0.crt").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{bport}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            fire = ch.unary_unary(BARE_FIRE, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            t0 = time.time()
            fire(payload, timeout=30)
        return t0, 999999, None, idle

    try:
        results["bare grpc.aio baseline"] = run_clients(bport, tmp, args.streams, args.procs, fire_bare, "bare")
    finally:
        bare.terminate()
        bare.wait(30)

    real, base = results["run_grpc (mTLS, DB, Redis)"], results["bare grpc.aio baseline"]
    print(f"\n{args.streams} streams, {args.procs} client processes, {os.cpu_count()} CPUs\n")
    print("| server | ACK p50 | ACK p99 | max | all ACKs in DB | RSS per idle stream |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | "
              f"{r['db_all_acked_ms']:.0f} ms | {r['idle_rss_kib']:.1f} KiB |")
    print(f"\nratio run_grpc/bare: p50 {real['p50_ms'] / base['p50_ms']:.2f}x, "
          f"p99 {real['p99_ms'] / base['p99_ms']:.2f}x")


if __name__ == "__main__":
    main()
