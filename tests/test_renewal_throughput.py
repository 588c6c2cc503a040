"""What makes 200 renewals cheap (issue 18) without making one less safe: publishes folded across concurrent
orders, one ACME client per account per worker thread, and an agent that skips ``nginx -t`` only when a change
rewrote certificate files under the same rendered configuration."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from certificates.acme_client import AcmeClient
from certificates.models import AcmeAccount
from gateway_agent.apply import Applier, ApplyError
from gateway_agent.config import AgentConfig
from gateways.services import _Coalescer
from tests.certificates_support import make_account
from tests.peers.nginx import NginxServer
from tests.push_support import cert_entry
from tests.test_agent_apply import update


def test_a_waiting_request_returns_only_after_a_publish_that_started_after_it() -> None:
    coalescer = _Coalescer()
    state = {"committed": 0, "published": 0, "publishes": 0}
    lock = threading.Lock()

    def publish() -> None:
        with lock:
            seen = state["committed"]  # what a builder reading committed rows would see
        time.sleep(0.02)
        with lock:
            state["published"] = max(state["published"], seen)
            state["publishes"] += 1

    failures: list[str] = []

    def requester() -> None:
        with lock:
            state["committed"] += 1
            mine = state["committed"]
        coalescer.request(("acme_challenges", 1), publish, wait=True)
        with lock:
            if state["published"] < mine:
                failures.append(f"request {mine} returned before a publish holding it ({state['published']})")

    threads = [threading.Thread(target=requester) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not failures
    assert state["publishes"] < 24  # folded: fewer publishes than requests


def test_a_failed_runner_leaves_the_publish_to_a_waiter() -> None:
    coalescer = _Coalescer()
    calls: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def failing() -> None:
        calls.append("fail")
        started.set()
        release.wait(5)
        raise RuntimeError("database went away")

    def working() -> None:
        calls.append("ok")

    def first() -> None:
        with pytest.raises(RuntimeError):
            coalescer.request(("certificates", None), failing, wait=True)

    runner = threading.Thread(target=first)
    runner.start()
    started.wait(5)
    waiter = threading.Thread(target=coalescer.request, args=(("certificates", None), working), kwargs={"wait": True})
    waiter.start()
    time.sleep(0.05)
    release.set()
    runner.join(5)
    waiter.join(5)
    assert not waiter.is_alive()
    assert calls == ["fail", "ok"]


def test_min_interval_spaces_publishes_and_folds_what_comes_meanwhile() -> None:
    coalescer = _Coalescer()
    starts: list[float] = []
    coalescer.request(("certificates", 7), lambda: starts.append(time.monotonic()), min_interval=0.3)
    threads = [threading.Thread(target=coalescer.request, args=(("certificates", 7), lambda: starts.append(
        time.monotonic())), kwargs={"min_interval": 0.3, "wait": True}) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert 2 <= len(starts) <= 3
    assert starts[1] - starts[0] >= 0.29


@pytest.mark.django_db
def test_one_acme_client_per_account_and_thread_until_the_account_changes(pebble) -> None:  # type: ignore[no-untyped-def]
    account = make_account(pebble)
    first = AcmeClient.reuse(account)
    assert AcmeClient.reuse(AcmeAccount.objects.get(pk=account.pk)) is first  # directory and connection kept
    other: list[AcmeClient] = []
    thread = threading.Thread(target=lambda: other.append(AcmeClient.reuse(account)))
    thread.start()
    thread.join(30)
    assert other and other[0] is not first  # not shared across threads (the nonce pool is not thread-safe)
    account.directory_url = pebble.directory_url + "?moved"
    assert AcmeClient.reuse(account) is not first
    account.directory_url = pebble.directory_url
    again = AcmeClient.reuse(account)
    AcmeClient.forget(account)
    assert AcmeClient.reuse(account) is not again


def counting(command: list[str], counter: Path) -> list[str]:
    """``command``, appending a line to ``counter`` each time it runs."""
    return ["sh", "-c", f'echo run >> "{counter}" && exec "$@"', "sh", *command]


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.mark.slow
def test_nginx_t_runs_when_the_include_changes_and_not_for_a_renewal_under_the_same_one(
        nginx: NginxServer, tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    cfg = AgentConfig(state_dir=str(tmp_path / "s"), cert_dir=str(tmp_path / "certs"),
                      challenge_dir=str(nginx.challenge_dir), nginx_include=str(nginx.tls_include),
                      nginx_listen=nginx.https_listen, check_command=counting(nginx.check_command, checks),
                      reload_command=nginx.reload_command, command_timeout=10)
    applier = Applier(cfg)
    a, _ = cert_entry(["a.example.test"])
    applier.apply(update("certificates", {"certificates": [a]}, 1))
    assert runs(checks) == 1  # new server block: checked
    renewed, _ = cert_entry(["a.example.test"])
    applier.apply(update("certificates", {"certificates": [renewed]}, 2))
    assert runs(checks) == 1  # same include, new files: the reload and the served check decide
    b, _ = cert_entry(["b.example.test"])
    applier.apply(update("certificates", {"certificates": [renewed, b]}, 3))
    assert runs(checks) == 2  # the include changed: checked again

    # an entry validated before is skipped, but a changed one is validated again (same applier)
    bad, _ = cert_entry(["b.example.test"])
    bad["key_pem"] = cert_entry(["b.example.test"])[0]["key_pem"]
    with pytest.raises(ApplyError, match="private key does not match"):
        applier.apply(update("certificates", {"certificates": [renewed, bad]}, 4))

    cfg.confirm_served = False  # without the served check nothing guards a skipped check: always checked
    again, _ = cert_entry(["a.example.test"])
    applier.apply(update("certificates", {"certificates": [again, b]}, 5))
    assert runs(checks) == 3
