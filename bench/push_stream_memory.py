"""What an idle push stream costs run_grpc in memory, and which server option or change moves it.

    DATABASE_URL=... REDIS_URL=... python bench/push_fanout.py --streams 1000 --skip-bare   # certificates, credentials
    DATABASE_URL=... REDIS_URL=... DEBUG=false python bench/push_stream_memory.py --streams 1000 \
        [--option grpc.tsi.max_frame_size=16384 ...] [--tracemalloc]

The replica runs in this process (the same start_server() as `manage.py run_grpc`, on its own event loop in a
thread) so that --option can add or override grpc server arguments, and --tracemalloc can say which Python lines
hold what is left once every stream is connected and has ACKed its initial push (per stream, largest first).
The clients are push_fanout's (one TLS connection and credential per Gateway, ACKing every update). Prints RSS
growth per stream; run it with DEBUG=false (as in production: with DEBUG on Django logs every query).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push_fanout import ROOT, Clients, raise_nofile, rss_kib  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=INT",
                    help="a grpc server argument to add or override (repeatable)")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--pki-cache", default=str(ROOT / "var" / "bench" / "push-pki"))
    args = ap.parse_args()
    raise_nofile()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    import django
    django.setup()
    import grpc
    from django.conf import settings

    from gateways.grpc_server import ServerConfig, start_server

    extra = {k: int(v) for k, v in (o.split("=", 1) for o in args.option)}
    original = grpc.aio.server

    def with_options(*a, options=None, **kw):  # noqa: ANN002, ANN003, ANN202
        merged = {**dict(options or []), **extra}
        return original(*a, options=list(merged.items()), **kw)

    grpc.aio.server = with_options  # type: ignore[assignment]
    pki = Path(args.pki_cache)
    loop = asyncio.new_event_loop()
    box: dict[str, object] = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        cfg = ServerConfig(bind="127.0.0.1:0", cert=str(pki / "server.crt"), key=str(pki / "server.key"),
                           ca=str(pki / "ca.crt"))
        box["running"] = loop.run_until_complete(start_server(cfg))
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(30)
    running = box["running"]
    time.sleep(1.0)
    if args.tracemalloc:
        tracemalloc.start()
        before_heap = tracemalloc.take_snapshot()
    before = rss_kib(os.getpid())
    clients = Clients([running.port], str(pki), args.streams, args.procs, 64)  # type: ignore[attr-defined]
    try:
        conn = clients.wait_connected(args.streams, 60 + args.streams / 50)
        time.sleep(3.0)  # initial pushes ACKed
        n = len(running.hub.streams)  # type: ignore[attr-defined]
        unanswered = sum(st.outstanding_count() for st in running.hub.streams.values())  # type: ignore[attr-defined]
        grown = rss_kib(os.getpid()) - before
        print(f"\n{n} idle streams ({conn['connected']} clients connected, {unanswered} updates unanswered), "
              f"options {extra or 'as in run_grpc'}, DEBUG={settings.DEBUG}: "
              f"RSS {grown / max(1, n):.1f} KiB per stream")
        if args.tracemalloc:
            stats = tracemalloc.take_snapshot().compare_to(before_heap, "lineno")
            print(f"Python heap {sum(s.size_diff for s in stats) / 1024 / max(1, n):.1f} KiB per stream, of which:")
            for s in stats[:15]:
                print(f"  {s.size_diff / 1024 / max(1, n):5.2f} KiB  {s.traceback}")
    finally:
        clients.stop()
        os._exit(0)  # the server thread's loop holds thousands of calls; the process ends here


if __name__ == "__main__":
    main()
