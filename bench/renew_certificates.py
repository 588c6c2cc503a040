"""Benchmark: renew N certificates (default 200) end to end on real components, then the two baselines on the
same Pebble and nginx in the same run.

Ours: a real ``celery worker -Q certificates -P threads -c C`` runs one ``certificates.renew_certificate`` per
certificate; each order's HTTP-01 tokens go through ``publish_desired_state("acme_challenges")`` → ``run_grpc`` →
``gateway-agent`` → files nginx serves → ACK, then Pebble validates against nginx (PEBBLE_VA_NOSLEEP=1,
PEBBLE_AUTHZREUSE=0). The clock stops when every certificate has its new version, the agent has ACKed the
certificates state that holds all of them, and a TLS handshake per name shows nginx serving the new serial.

Baselines (bench/baselines.py), chosen with ``--baselines``: certbot one ``certonly --webroot`` per certificate,
lego 8 and lego 64 at a time (each slot its own account); lego's validations are counted as instant (valid when
it first looked) or waited (found after a backoff sleep). The headline ratio is ours against the fastest
baseline of the run.

CPU: for ours and for every baseline, CPU-seconds per process role over its own window, from /proc
(bench/cpu.py): the worker, run_grpc, the agent with its ``nginx -t``/``nginx -s reload`` children, nginx
(master, workers, reaped old workers), the PostgreSQL backends of the bench database, Pebble, BIND, and each
baseline's tool processes; plus this process and the whole machine (the machine is shared: everyone's load).

    python bench/renew_certificates.py [--count 200] [--concurrency 32] [--processes 1] [--baseline-count N]
                                       [--baselines certbot lego8 lego64 | none] [--cpu-tables FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._db import recreate_database  # noqa: E402  (after the path is set)
from bench.cpu import CpuMeter  # noqa: E402

BASELINES = ("certbot", "lego8", "lego64")

DEFAULT_DB = "postgres://postgres:postgres@127.0.0.1:5432/gw_bench_renew"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _old_versions(certs: list, days_left: int = 20) -> None:  # type: ignore[type-arg]
    """Give every certificate a current (imported, CA-looking) version expiring in ``days_left`` days."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from certificates import x509
    from certificates.models import Certificate, CertificateVersion

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "previous CA")])
    for cert in certs:
        key_pem = x509.generate_private_key("ec256")
        key = serialization.load_pem_private_key(key_pem.encode(), None)
        leaf = (cx509.CertificateBuilder()
                .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cert.domains[0])]))
                .issuer_name(issuer).public_key(key.public_key()).serial_number(cx509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=70)).not_valid_after(now + dt.timedelta(days=days_left))
                .add_extension(cx509.SubjectAlternativeName([cx509.DNSName(d) for d in cert.domains]), False)
                .sign(ca_key, hashes.SHA256()))
        pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        info = x509.certificate_info(pem)
        version = CertificateVersion.objects.create(
            certificate=cert, source="imported", serial_hex=info.serial_hex,
            fingerprint_sha256=info.fingerprint_sha256, subject=info.subject, issuer_dn=info.issuer_dn,
            domains=info.domains, not_before=info.not_before, not_after=info.not_after, cert_pem=pem,
            key_pem=key_pem, key_type="ec256")
        Certificate.objects.filter(pk=cert.pk).update(current_version=version, not_after=info.not_after,
                                                      state="valid", renew_after=now - dt.timedelta(minutes=1))


def run_ours(args: argparse.Namespace, work: Path, pebble, nginx, env: dict[str, str],  # type: ignore[no-untyped-def]
             shared: dict[str, Callable[[], list[int]]], database: str) -> tuple[dict, CpuMeter]:  # type: ignore[type-arg]
    from cryptography import x509 as cx509

    from certificates.acme_client import generate_account_key
    from certificates.models import AcmeAccount, AcmeOrder, Certificate, CertificateIssuer
    from certificates.tasks import renew_certificate
    from gateways.models import GatewayGroup
    from gateways.services import desired_version, publish_desired_state, wait_for_acks
    from tests.peers.nginx import free_port
    from tests.push_support import AgentProcess, Pki, agent_settings, wait_until

    pki = Pki.create(work / "pki")
    grpc_port = free_port()
    grpc_env = {**env, "GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key),
                "GRPC_CA_CERT": str(pki.ca), "PUSH_DEBOUNCE_SECONDS": "0.02"}
    grpc_log = work / "run_grpc.log"
    grpc = subprocess.Popen([sys.executable, "manage.py", "run_grpc", "--bind", f"127.0.0.1:{grpc_port}",
                             "--metrics-port", "0"],
                            cwd=ROOT, env=grpc_env, stdout=grpc_log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_until(lambda: _listening(grpc_port) or grpc.poll() is not None, timeout=30, message="run_grpc listening")
    if grpc.poll() is not None:
        raise RuntimeError(f"run_grpc exited: {grpc_log.read_text()[-2000:]}")
    agent = AgentProcess(work / "agent", agent_settings(
        work / "agent", pki, grpc_port, "edge-1", "default", challenge_dir=str(nginx.challenge_dir),
        nginx_include=str(nginx.tls_include), nginx_listen=nginx.https_listen,
        nginx_http_listen=f"127.0.0.1:{nginx.http_port}", check_command=nginx.check_command,
        reload_command=nginx.reload_command)).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: agent.known().get("certificates"), timeout=30, message="agent connected")
        _progress("agent connected")
        group = GatewayGroup.objects.get(name="default")
        account = AcmeAccount.objects.create(
            name="bench", directory_url=pebble.directory_url, key_pem=generate_account_key(),
            tls_ca_bundle=pebble.ca_bundle, trust_roots_pem=pebble.roots_pem())
        run = os.urandom(3).hex()
        certs = []
        for i in range(args.count):
            domain = f"ours-{run}-{i}.example.test"
            cert = Certificate.objects.create(name=f"ours-{run}-{i}", common_name=domain, domains=[domain])
            CertificateIssuer.objects.create(certificate=cert, account=account, priority=0)
            certs.append(cert)
        _old_versions(certs)
        assert wait_for_acks(publish_desired_state("certificates"), timeout=120).ok, "initial push not ACKed"
        _progress(f"{len(certs)} certificates with expiring versions pushed and ACKed")

        from worker_project.celery import app

        # a worker left over from a killed run (another checkout, another Pebble) on this broker would take some of
        # this run's tasks and fail them; its queued tasks would run here. Refuse the first, drop the second.
        strangers = app.control.ping(timeout=1.0)
        if strangers:
            raise SystemExit(f"other Celery workers answer on {env['REDIS_URL']}: "
                             f"{sorted(name for reply in strangers for name in reply)}; stop them or use another "
                             "BENCH_REDIS_URL")
        app.control.purge()
        workers = [subprocess.Popen(  # --processes of them: the GIL holds one process to one core
            [sys.executable, "-m", "celery", "-A", "worker_project", "worker", "-Q", "certificates", "-P", "threads",
             "-c", str(args.concurrency), "-n", f"bench{n}@%h", "--without-heartbeat", "--without-mingle",
             "--without-gossip", "-l", "WARNING"],
            cwd=ROOT, env={**env, "CELERY_PREFETCH_MULTIPLIER": "4"}, stdout=(work / f"celery{n}.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True) for n in range(args.processes)]
        time.sleep(1.0)
        wait_until(lambda: len(app.control.ping(timeout=0.5)) >= args.processes, timeout=60,
                   message="celery workers ready")

        _progress("celery worker ready; renewing")
        ids = [c.pk for c in certs]
        assert agent.proc is not None
        agent_pid = agent.proc.pid
        meter = CpuMeter({
            "celery worker (certificates)": lambda: [w.pid for w in workers],
            "run_grpc": lambda: [grpc.pid],
            "gateway-agent (+ its nginx -t / -s reload)": lambda: [agent_pid],
            **shared,
        }, database=database).start()
        targets = [*((f"worker{n}", w.pid) for n, w in enumerate(workers)), ("agent", agent_pid),
                   ("run_grpc", grpc.pid)]
        profilers = [subprocess.Popen(  # BENCH_PYSPY=DIR: py-spy profiles (collapsed stacks) of our processes
            ["py-spy", "record", "--nonblocking", "--gil", "--format", "raw", "--rate", "100", "-p", str(pid),
             "-o", str(Path(os.environ["BENCH_PYSPY"]) / f"{name}.txt")], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for name, pid in targets] if os.environ.get("BENCH_PYSPY") else []
        start = time.perf_counter()
        for pk in ids:
            renew_certificate.delay(pk)
        _progress(f"{len(ids)} renewals enqueued in {time.perf_counter() - start:.2f}s")
        while Certificate.objects.filter(pk__in=ids, current_version__source="acme").count() < len(ids):
            if time.perf_counter() - start > args.timeout:
                break
            time.sleep(0.05)
        issued_at = time.perf_counter() - start
        issued = Certificate.objects.filter(pk__in=ids, current_version__source="acme").count()
        _progress(f"{issued} issued in {issued_at:.2f}s; waiting for the ACK")
        ack = wait_for_acks([desired_version("certificates", group)], timeout=120)
        acked_at = time.perf_counter() - start

        # `nginx -s reload` returns before the new workers serve: the clock stops when every name's TLS
        # handshake presents its new serial, not at the ACK.
        expected = {c.domains[0]: c.current_version.serial_hex
                    for c in Certificate.objects.filter(pk__in=ids).select_related("current_version")}
        while True:
            expected = {name: serial for name, serial in expected.items() if format(
                cx509.load_der_x509_certificate(nginx.peer_certificate(name)).serial_number, "x") != serial}
            if not expected or time.perf_counter() - start > args.timeout:
                break
            time.sleep(0.05)
        served_at = time.perf_counter() - start
        meter.stop()
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        served = len(ids) - len(expected)
        failed_orders = AcmeOrder.objects.filter(certificate_id__in=ids, status="failed").count()
        return {
            "tool": f"gateway-worker ({args.processes} x celery -P threads -c {args.concurrency})",
            "certificates": len(ids),
            "issued": issued, "served_by_nginx": served, "failed_orders": failed_orders, "acked": bool(ack.ok),
            "seconds_to_all_issued": round(issued_at, 3), "seconds_to_acked": round(acked_at, 3),
            "total_seconds": round(served_at, 3), "seconds_per_certificate": round(served_at / max(1, served), 4),
            "certificates_per_second": round(served / served_at, 2),
            "cpu_seconds": {role: round(v, 2) for role, v in meter.result.items()},
            "load_average_at_end": [round(v, 2) for v in meter.load_average],
        }, meter
    finally:
        for worker in workers:
            _stop(worker)
        agent.stop()
        _stop(grpc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32, help="threads per worker process")
    parser.add_argument("--processes", type=int, default=1, help="certificates worker processes")
    parser.add_argument("--baseline-count", type=int, default=None, help="default: --count")
    parser.add_argument("--baselines", nargs="+", choices=[*BASELINES, "none"], default=list(BASELINES),
                        help="baselines to run after ours, in this order (default: all; certbot takes ~3 s each)")
    parser.add_argument("--skip-baselines", action="store_true", help="same as --baselines none")
    parser.add_argument("--cpu-tables", type=Path, default=None, help="also append the CPU tables to this file")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    # a SIGTERM (e.g. from `timeout`) unwinds through the finally blocks, so no child outlives the run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    db_url = os.environ.get("BENCH_RENEW_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    recreate_database(db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE":
           "worker_project.settings", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from bench.baselines import bench_domains, run_certbot, run_lego_parallel
    from tests.peers.bind import running_bind
    from tests.peers.nginx import NginxServer, free_port
    from tests.peers.pebble import running_pebble

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(redis_url).flushdb()
    results: dict[str, object] = {}
    tables: list[str] = []
    keep = os.environ.get("BENCH_KEEP_DIR")  # keep the logs (agent, run_grpc, celery, nginx) of the run there
    with tempfile.TemporaryDirectory(prefix="gw-bench-renew-") as tmp:
        work = Path(keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with running_bind(work / "bind") as bind, \
                running_pebble(work / "pebble", bind.address, gated=False) as pebble:
            nginx = NginxServer(root=work / "nginx", http_port=pebble.http_port, https_port=free_port(),
                                challenge_dir=work / "nginx" / "acme-challenge",
                                tls_include=work / "nginx" / "conf.d" / "gateway-tls.conf")
            nginx.start()
            shared: dict[str, Callable[[], list[int]]] = {
                "nginx (master, workers, old workers)": lambda: [nginx.proc.pid],  # type: ignore[union-attr]
                "pebble": lambda: [pebble.process.pid],  # type: ignore[union-attr]
                "BIND (Pebble's DNS)": lambda: [bind.process.pid],  # type: ignore[union-attr]
            }
            try:
                ours, meter = run_ours(args, work, pebble, nginx, env, shared, db_url.rsplit("/", 1)[1])
                results["ours"] = ours
                tables.append(meter.table(f"ours, {ours['tool']}", int(ours["served_by_nginx"])))
                print(json.dumps(ours), flush=True)
                n = args.baseline_count or args.count
                for name in [] if args.skip_baselines else [b for b in args.baselines if b != "none"]:
                    meter = CpuMeter({**shared}, children_role=f"{name} processes").start()
                    if name == "certbot":
                        result = run_certbot(bench_domains(n, bind.zone, "certbot"), pebble.directory_url,
                                             pebble.ca_bundle, nginx.challenge_dir, work / "certbot-run")
                    else:
                        parallel = int(name.removeprefix("lego"))
                        result = run_lego_parallel(bench_domains(n, bind.zone, name), pebble.directory_url,
                                                   pebble.ca_bundle, nginx.challenge_dir, work / f"{name}-run",
                                                   parallel=parallel)
                    meter.stop()
                    tables.append(meter.table(result.tool, result.issued))
                    summary = result.summary() | {"per_certificate_seconds": None, "validation_seconds": None,
                                                  "cpu_seconds": {r: round(v, 2) for r, v in meter.result.items()},
                                                  "load_average_at_end": [round(v, 2) for v in meter.load_average]}
                    results[name] = summary
                    print(json.dumps(summary), flush=True)
                ours_spc = float(ours["seconds_per_certificate"])
                ratios = {name: round(float(r["seconds_per_certificate"]) / ours_spc, 2)  # type: ignore[index]
                          for name, r in results.items() if name in BASELINES}
                results["ours_speedup_vs"] = ratios
                if ratios:
                    best = min(ratios, key=lambda k: ratios[k])
                    results["headline"] = (f"ours {ours_spc:.4f} s/cert vs the best baseline of the run, {best} "
                                           f"{results[best]['seconds_per_certificate']} s/cert: "  # type: ignore[index]
                                           f"{ratios[best]}x ({'ours ahead' if ratios[best] > 1 else 'ours behind'})")
            finally:
                nginx.stop()
    print(json.dumps(results, indent=2))
    text = "\n\n".join(tables)
    print("\n" + text, flush=True)
    if args.cpu_tables:
        with args.cpu_tables.open("a") as fh:
            fh.write(f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC {' '.join(sys.argv)}\n\n{text}\n\n")
    ok = results["ours"]["issued"] == args.count and results["ours"]["acked"]  # type: ignore[index]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
