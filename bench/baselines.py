"""Baselines for the renewal benchmark: obtain N certificates from the same Pebble through the same nginx (HTTP-01,
webroot) the way users run the usual tools:

* certbot: one ``certbot certonly --webroot`` per certificate, sequential (its own config/work/logs dirs);
* lego: ``lego … --http --http.webroot … run`` per certificate, N processes at a time (8 or 64 in the renewal
  benchmark), each slot its own account.

Both write challenge files into ``<webroot>/.well-known/acme-challenge/``; :func:`make_webroot` builds a webroot
whose ``.well-known/acme-challenge`` is the directory nginx serves (``NginxServer.challenge_dir``).

Standalone: ``python bench/baselines.py --domains 4`` starts BIND, Pebble and nginx itself and prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Queue

CERTBOT = shutil.which("certbot") or "/usr/bin/certbot"
LEGO = shutil.which("lego") or "/usr/bin/lego"
EMAIL = "bench@example.test"
# lego answers the challenge, then asks for the authorization again at once and, if not yet valid, backs off (its
# first sleep lasts seconds). A validation seen within INSTANT seconds of "Trying to solve" was
# valid at that first look; later ones waited in the backoff.
INSTANT = 0.5


@dataclass
class BaselineResult:
    tool: str
    domains: int
    issued: int
    total_seconds: float
    per_certificate_seconds: list[float] = field(default_factory=list)  # each tool run, wall time
    failures: list[str] = field(default_factory=list)
    # lego: seconds from "Trying to solve HTTP-01" to "The server validated our request" on its log, per run
    validation_seconds: list[float] = field(default_factory=list)

    @property
    def validations_instant(self) -> int:
        """Validations lego saw done at its first look (under INSTANT seconds after it answered)."""
        return sum(1 for s in self.validation_seconds if s < INSTANT)

    @property
    def validations_waited(self) -> int:
        """Validations lego found only after sleeping in its backoff (INSTANT seconds or more)."""
        return sum(1 for s in self.validation_seconds if s >= INSTANT)

    @property
    def seconds_per_certificate(self) -> float:
        """Wall time divided by certificates issued (what throughput comparisons use)."""
        return self.total_seconds / self.issued if self.issued else float("inf")

    @property
    def certificates_per_second(self) -> float:
        return self.issued / self.total_seconds if self.total_seconds else 0.0

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data["seconds_per_certificate"] = round(self.seconds_per_certificate, 3)
        data["certificates_per_second"] = round(self.certificates_per_second, 3)
        data["total_seconds"] = round(self.total_seconds, 3)
        data["per_certificate_seconds"] = [round(s, 3) for s in self.per_certificate_seconds]
        waits = sorted(self.validation_seconds)
        data["validation_seconds"] = [round(s, 3) for s in self.validation_seconds]
        if waits:
            data["validations_instant"] = self.validations_instant
            data["validations_waited"] = self.validations_waited
            data["validation_seconds_median"] = round(waits[len(waits) // 2], 3)
            data["validation_seconds_max"] = round(waits[-1], 3)
        return data


def make_webroot(challenge_dir: Path, workdir: Path) -> Path:
    """A webroot whose ``.well-known/acme-challenge`` is ``challenge_dir`` (the directory nginx serves)."""
    webroot = workdir / "webroot"
    (webroot / ".well-known").mkdir(parents=True, exist_ok=True)
    link = webroot / ".well-known" / "acme-challenge"
    if not link.exists():
        link.symlink_to(challenge_dir.resolve(), target_is_directory=True)
    return webroot


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    error = "" if proc.returncode == 0 else (proc.stderr or proc.stdout)[-800:]
    return elapsed, error


def run_certbot(domains: Sequence[str], directory_url: str, ca_bundle: str, challenge_dir: Path, workdir: Path,
                timeout: float = 120) -> BaselineResult:
    """One ``certbot certonly --webroot`` per domain, one after another, one shared account (as a user would)."""
    workdir.mkdir(parents=True, exist_ok=True)
    webroot = make_webroot(challenge_dir, workdir)
    dirs = {name: workdir / "certbot" / name for name in ("config", "work", "logs")}
    env = {**os.environ, "REQUESTS_CA_BUNDLE": ca_bundle}
    result = BaselineResult("certbot", len(domains), 0, 0.0)
    start = time.perf_counter()
    for domain in domains:
        argv = [CERTBOT, "certonly", "--webroot", "-w", str(webroot), "--server", directory_url, "-d", domain,
                "--non-interactive", "--agree-tos", "-m", EMAIL,
                "--config-dir", str(dirs["config"]), "--work-dir", str(dirs["work"]), "--logs-dir", str(dirs["logs"])]
        elapsed, error = _run(argv, env, timeout)
        result.per_certificate_seconds.append(elapsed)
        if error or not (dirs["config"] / "live" / domain / "fullchain.pem").exists():
            result.failures.append(f"{domain}: {error or 'no certificate written'}")
        else:
            result.issued += 1
    result.total_seconds = time.perf_counter() - start
    return result


def _run_lego(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str, float | None]:
    """One lego run, its log read as it is written (lego logs to stderr, to the second): wall time, error, and
    the seconds between "Trying to solve HTTP-01" and "The server validated our request" by this clock."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    tail: list[str] = []
    solving: float | None = None
    validated: float | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            if "Trying to solve HTTP-01" in line and solving is None:
                solving = now
            elif "The server validated our request" in line and validated is None:
                validated = now
            tail = (tail + [line])[-20:]
        returncode = proc.wait()
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - start
    error = "" if returncode == 0 else "".join(tail)[-800:]
    wait = validated - solving if solving is not None and validated is not None else None
    return elapsed, error, wait


def run_lego_parallel(domains: Sequence[str], directory_url: str, ca_bundle: str, challenge_dir: Path,
                      workdir: Path, parallel: int = 8, timeout: float = 120) -> BaselineResult:
    """``lego run`` per domain, ``parallel`` processes at a time; each slot has its own ``--path`` and e-mail (its
    own account, registered by the slot's first run), so concurrent runs never share an account."""
    workdir.mkdir(parents=True, exist_ok=True)
    webroot = make_webroot(challenge_dir, workdir)
    env = {**os.environ, "LEGO_CA_CERTIFICATES": ca_bundle}
    slots: Queue[int] = Queue()
    for i in range(parallel):
        slots.put(i)
    result = BaselineResult(f"lego-{parallel}-parallel", len(domains), 0, 0.0)

    def one(domain: str) -> tuple[str, float, str, float | None]:
        slot = slots.get()
        path = workdir / "lego" / f"slot-{slot}"
        try:
            argv = [LEGO, "--server", directory_url, "--email", f"slot-{slot}@example.test", "--accept-tos",
                    "--http", "--http.webroot", str(webroot), "--domains", domain, "--path", str(path), "run"]
            elapsed, error, wait = _run_lego(argv, env, timeout)
            if not error and not (path / "certificates" / f"{domain}.crt").exists():
                error = "no certificate written"
            return domain, elapsed, error, wait
        finally:
            slots.put(slot)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for domain, elapsed, error, wait in pool.map(one, domains):
            result.per_certificate_seconds.append(elapsed)
            if wait is not None:
                result.validation_seconds.append(wait)
            if error:
                result.failures.append(f"{domain}: {error}")
            else:
                result.issued += 1
    result.total_seconds = time.perf_counter() - start
    return result


def bench_domains(count: int, zone: str = "example.test", prefix: str = "bench") -> list[str]:
    """``count`` fresh names (a random run id, so a second run never reuses names)."""
    run = secrets.token_hex(3)
    return [f"{prefix}-{run}-{i}.{zone}" for i in range(count)]


def _standalone(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.peers.bind import running_bind
    from tests.peers.nginx import NginxServer, free_port
    from tests.peers.pebble import running_pebble

    with tempfile.TemporaryDirectory(prefix="gw-baselines-") as tmp:
        root = Path(tmp)
        with running_bind(root / "bind") as bind, running_pebble(root / "pebble", bind.address, gated=False) as peb:
            nginx = NginxServer(root=root / "nginx", http_port=peb.http_port, https_port=free_port(),
                                challenge_dir=root / "nginx" / "acme-challenge",
                                tls_include=root / "nginx" / "conf.d" / "tls.conf")
            nginx.start()
            try:
                results = []
                if "certbot" in args.tools:
                    results.append(run_certbot(bench_domains(args.domains, bind.zone, "certbot"), peb.directory_url,
                                               peb.ca_bundle, nginx.challenge_dir, root / "certbot-run"))
                if "lego" in args.tools:
                    results.append(run_lego_parallel(bench_domains(args.domains, bind.zone, "lego"),
                                                     peb.directory_url, peb.ca_bundle, nginx.challenge_dir,
                                                     root / "lego-run", parallel=args.parallel))
            finally:
                nginx.stop()
    for result in results:
        print(json.dumps(result.summary(), indent=None if args.compact else 2))
    return 0 if all(r.issued == r.domains for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=4, help="certificates per tool (default 4)")
    parser.add_argument("--tools", nargs="+", choices=["certbot", "lego"], default=["certbot", "lego"])
    parser.add_argument("--parallel", type=int, default=8, help="lego processes at a time (default 8)")
    parser.add_argument("--compact", action="store_true", help="one JSON line per tool")
    return _standalone(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
