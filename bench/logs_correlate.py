"""Benchmark: parse + correlate + store (for replay) a 1,000,000-line nginx combined log with attacks mixed in,
against CrowdSec replaying the same log offline (its Debian offline hub: nginx parsers, HTTP scenarios) and GoAccess
parsing and aggregating it (the parse-rate reference).

    python bench/logs_correlate.py [--lines 1000000] [--crowdsec-lines 20000] [--seed 7] [--batch 5000]

The log is the labelled corpus of ``logpipeline/corpus.py`` (three instances, every attack kind but the WAF text
lines, benign look-alikes) scaled to ``--lines`` by benign traffic at ~8 requests/s; generating it is not timed.
Ours runs in this one process: ``ingest()`` per batch and instance (COPY into its own PostgreSQL database
BENCH_LOGS_DATABASE_URL, default ``gw_bench_logs``, recreated; windows in Redis BENCH_LOGS_REDIS_URL under a
fresh prefix). CPU is counted for this process, its PostgreSQL backend (from /proc) and the Redis server (INFO
cpu, the whole server: an upper bound), so "lines per CPU-second" includes storage and the shared windows.
The baselines' CPU is their child-process CPU. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._db import recreate_database  # noqa: E402

DB_URL = os.environ.get("BENCH_LOGS_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/gw_bench_logs")
REDIS_URL = os.environ.get("BENCH_LOGS_REDIS_URL", "redis://127.0.0.1:6379/9")
CROWDSEC_CONFIG = """common:
  daemonize: false
  log_media: file
  log_level: warning
  log_dir: {d}/log/
  working_dir: .
config_paths:
  config_dir: {d}/etc/
  data_dir: {d}/data/
  simulation_path: {d}/etc/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {d}/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {d}/etc/acquis.yaml
  parser_routines: 1
  buckets_routines: 1
  output_routines: 1
db_config:
  log_level: warning
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: true
api:
  client:
    credentials_path: {d}/etc/local_api_credentials.yaml
  server:
    log_level: warning
    listen_uri: 127.0.0.1:{port}
    profiles_path: {d}/etc/profiles.yaml
    trusted_ips: [127.0.0.1]
prometheus:
  enabled: false
"""


def setup_django() -> None:
    os.environ["DATABASE_URL"] = DB_URL
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ.setdefault("WORKER_ENV", "test")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    import django

    recreate_database(DB_URL)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ours(batches: list[tuple[str, str, list[bytes]]], total: int) -> dict[str, object]:
    import redis
    from django.db import connection

    from logpipeline.correlation import Engine
    from logpipeline.services import ingest

    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"lp-bench:{uuid.uuid4().hex[:8]}:"
    engine = Engine(client=client, prefix=prefix)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    found: set[tuple[str, str]] = set()
    malformed = 0
    pg0, redis0, cpu0, wall0 = proc_cpu(backend), redis_cpu(client), time.process_time(), time.perf_counter()
    for instance, fmt, lines in batches:
        result = ingest("file", instance, lines, fmt, engine=engine)
        malformed += result.malformed
        found |= {(d.event_type, d.subject) for d in result.detections}
    wall = time.perf_counter() - wall0
    cpu, pg, rcpu = time.process_time() - cpu0, proc_cpu(backend) - pg0, redis_cpu(client) - redis0
    stored = _count_rows()
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    return {"lines": total, "stored": stored, "malformed": malformed, "wall_seconds": round(wall, 2),
            "process_cpu_seconds": round(cpu, 2), "postgres_backend_cpu_seconds": round(pg, 2),
            "redis_server_cpu_seconds": round(rcpu, 2),
            "lines_per_cpu_second": round(total / (cpu + pg + rcpu)),
            "lines_per_second_this_process_cpu": round(total / cpu),
            "lines_per_second_wall": round(total / wall), "detections": sorted(found)}


def _count_rows() -> int:
    from logpipeline.models import RequestLog

    return RequestLog.objects.count()


def detect_only(batches: list[tuple[str, str, list[bytes]]], limit: int) -> list[tuple[str, str]]:
    """Our detections on the first ``limit`` lines (the slice CrowdSec replays), fresh windows, nothing stored."""
    import redis

    from logpipeline.correlation import Engine
    from logpipeline.services import ingest

    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"lp-bench:{uuid.uuid4().hex[:8]}:"
    engine = Engine(client=client, prefix=prefix)
    found: set[tuple[str, str]] = set()
    seen = 0
    for instance, fmt, lines in batches:
        take = lines[:max(0, limit - seen)]
        seen += len(lines)
        if take:
            result = ingest("file", instance, take, fmt, engine=engine, store=False)
            found |= {(d.event_type, d.subject) for d in result.detections}
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    return sorted(found)


def run_goaccess(path: Path) -> dict[str, object]:
    exe = shutil.which("goaccess")
    if exe is None:
        return {"error": "goaccess not installed (apt-get install goaccess)"}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    lines = sum(1 for _ in path.open("rb"))
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, wall0 = children_cpu(), time.perf_counter()
        proc = subprocess.run([exe, str(path), "--log-format=COMBINED", "--no-global-config", "-o",
                               f"{tmp}/report.json"], capture_output=True, text=True)
        wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    return {"tool": version, "lines": lines, "exit": proc.returncode, "wall_seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2), "lines_per_cpu_second": round(lines / cpu) if cpu else None}


def run_crowdsec(path: Path, lines: int) -> dict[str, object]:
    exe, cscli = shutil.which("crowdsec"), shutil.which("cscli")
    if exe is None or cscli is None or not Path("/var/lib/crowdsec/hub/.index.json").exists():
        return {"error": "crowdsec (with its offline hub) not installed: apt-get install crowdsec"}
    version = subprocess.run([cscli, "version"], capture_output=True, text=True)
    import re

    found_version = re.search(r"version:\s*(\S+)", version.stdout + version.stderr)
    version_text = found_version.group(1) if found_version else "unknown version"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        shutil.copytree("/etc/crowdsec", d / "etc", symlinks=True,
                        ignore=shutil.ignore_patterns("*credentials*", "config.yaml*", "acquis*"))
        shutil.copytree("/var/lib/crowdsec/data", d / "data", ignore=shutil.ignore_patterns("crowdsec.db*"))
        (d / "log").mkdir()
        (d / "etc" / "acquis.yaml").write_text("filenames: [/dev/null]\nlabels: {type: nginx}\n")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = d / "etc" / "config.yaml"
        config.write_text(CROWDSEC_CONFIG.format(d=d, port=port))
        subprocess.run([cscli, "-c", str(config), "machines", "add", "bench", "--auto", "--force", "-f",
                        str(d / "etc" / "local_api_credentials.yaml")], capture_output=True, check=True)
        scenarios = sorted(p.stem for p in (d / "etc" / "scenarios").glob("*.yaml"))
        slice_path = d / "slice.log"
        with path.open("rb") as src, slice_path.open("wb") as dst:
            for n, line in enumerate(src):
                if n >= lines:
                    break
                dst.write(line)
        cpu0, wall0 = children_cpu(), time.perf_counter()
        proc = subprocess.run([exe, "-c", str(config), "-dsn", f"file://{slice_path}", "-type", "nginx"],
                              capture_output=True, text=True, timeout=3600)
        wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
        with sqlite3.connect(d / "data" / "crowdsec.db") as db:
            alerts = sorted({(s, ip) for s, ip in db.execute("SELECT scenario, source_ip FROM alerts")})
    return {"tool": f"crowdsec {version_text}, Debian offline hub", "lines": lines,
            "exit": proc.returncode, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "lines_per_cpu_second": round(lines / cpu) if cpu else None, "scenarios_enabled": len(scenarios),
            "alerts": alerts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--crowdsec-lines", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()

    setup_django()
    from logpipeline import corpus
    from logpipeline.detectors import seed_default_detectors

    seed_default_detectors()
    attack_lines = len(corpus.generate(seed=args.seed, benign_lines=0, with_waf_text=False))
    benign = max(0, args.lines - attack_lines)
    lines = corpus.generate(seed=args.seed, benign_lines=benign, duration=max(2400.0, benign / 8.3),
                            with_waf_text=False)
    batches = [(i, f, [line.encode() for line in group]) for i, f, group in corpus.batches(lines, args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log"
        path.write_text("".join(line.line + "\n" for line in lines))
        report: dict[str, object] = {"lines": len(lines), "nproc": os.cpu_count(),
                                     "loadavg_before": os.getloadavg()[0]}
        report["ours"] = ours = run_ours(batches, len(lines))
        expected = {(e, s) for k, (e, s) in corpus.EXPECTED.items() if k != "waf_block_burst"}
        ours_found = set(map(tuple, ours["detections"]))  # type: ignore[arg-type]
        report["ours_recall"] = f"{len(expected & ours_found)}/{len(expected)}"
        report["ours_false_positives"] = sorted(ours_found - expected)
        if not args.skip_baselines:
            report["goaccess"] = goaccess = run_goaccess(path)
            report["crowdsec"] = crowdsec = run_crowdsec(path, min(args.crowdsec_lines, len(lines)))
            report["ours_on_crowdsec_slice"] = detect_only(batches, int(crowdsec.get("lines", 0) or 0))
            rate = crowdsec.get("lines_per_cpu_second")
            if rate:
                report["ratio_vs_crowdsec"] = round(ours["lines_per_cpu_second"] / rate, 1)  # type: ignore[operator]
            if goaccess.get("lines_per_cpu_second"):
                report["ratio_vs_goaccess"] = round(
                    ours["lines_per_cpu_second"] / goaccess["lines_per_cpu_second"], 2)  # type: ignore[operator]
        report["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
