"""The agent validates before writing and puts every previous file back when a step fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb

from gateway_agent.apply import Applier, ApplyError, render_ip_lists
from gateway_agent.config import AgentConfig
from gateways.resources import serialize, to_message
from tests.push_support import cert_entry


def update(rtype: str, data: dict, version: int = 1) -> pb.ResourceUpdate:
    msg = to_message(rtype, data)
    _, checksum = serialize(msg)
    u = pb.ResourceUpdate(type=rtype, version=version, nonce="n", checksum=checksum)
    getattr(u, rtype).MergeFrom(msg)
    return u


@pytest.fixture
def cfg(tmp_path: Path) -> AgentConfig:
    return AgentConfig(state_dir=str(tmp_path / "s"), cert_dir=str(tmp_path / "certs"),
                       challenge_dir=str(tmp_path / "ch"), rules_file=str(tmp_path / "waf-rules.yaml"))


def test_key_that_does_not_match_is_rejected_and_nothing_written(cfg: AgentConfig, tmp_path: Path) -> None:
    good, _ = cert_entry(["a.test"])
    Applier(cfg).apply(update("certificates", {"certificates": [good]}))
    before = {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()}
    bad, _ = cert_entry(["b.test"])
    other, _ = cert_entry(["b.test"])
    bad["key_pem"] = other["key_pem"]
    with pytest.raises(ApplyError, match="private key does not match"):
        Applier(cfg).apply(update("certificates", {"certificates": [bad]}, 2))
    assert {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()} == before


def test_garbage_pem_and_bad_names_are_rejected(cfg: AgentConfig) -> None:
    entry, _ = cert_entry(["a.test"])
    with pytest.raises(ApplyError, match="not a PEM certificate"):
        Applier(cfg).apply(update("certificates", {"certificates": [{**entry, "cert_pem": "nope"}]}))
    with pytest.raises(ApplyError, match="invalid domain"):
        Applier(cfg).apply(update("certificates", {"certificates": [{**entry, "domains": ["../etc/passwd"]}]}))
    with pytest.raises(ApplyError, match="invalid ACME token"):
        Applier(cfg).apply(update("acme_challenges", {"challenges": [
            {"domain": "a.test", "token": "../x", "key_authorization": "../x.y"}]}))


def test_failed_check_restores_previous_rules(cfg: AgentConfig, tmp_path: Path) -> None:
    Applier(cfg).apply(update("waf_rules", {"name": "waf-rules.yaml", "content": "rules: [1]\n"}))
    cfg.check_command = ["sh", "-c", "echo syntax error >&2; exit 1"]
    with pytest.raises(ApplyError, match="check command exited 1: syntax error"):
        Applier(cfg).apply(update("waf_rules", {"name": "waf-rules.yaml", "content": "rules: [2]\n"}, 2))
    assert (tmp_path / "waf-rules.yaml").read_text() == "rules: [1]\n"
    with pytest.raises(ApplyError, match="not valid YAML"):
        Applier(cfg).apply(update("waf_rules", {"name": "waf-rules.yaml", "content": "rules: [\n"}, 3))


def test_checksum_mismatch_is_rejected(cfg: AgentConfig) -> None:
    u = update("waf_rules", {"name": "waf-rules.yaml", "content": "a: 1\n"})
    u.checksum = "0" * 64
    with pytest.raises(ApplyError, match="checksum mismatch"):
        Applier(cfg).apply(u)


def test_emergency_rules_render_as_nginx_denies_when_the_file_is_an_include(tmp_path: Path) -> None:
    cfg = AgentConfig(state_dir=str(tmp_path / "s"), emergency_file=str(tmp_path / "access.conf"))
    rules = {"rules": [
        {"id": "1", "kind": "ip", "value": "127.0.0.5", "action": "block", "expires_at": 1, "reason": "r"},
        {"id": "2", "kind": "cidr", "value": "10.1.0.0/16", "action": "block", "expires_at": 1, "reason": "r"},
        {"id": "3", "kind": "ip", "value": "10.9.9.9", "action": "log", "expires_at": 1, "reason": "count"},
        {"id": "4", "kind": "pattern", "value": "uri:^/wp-", "action": "block", "expires_at": 1, "reason": "r"},
    ]}
    Applier(cfg).apply(update("emergency_rules", rules))
    text = (tmp_path / "access.conf").read_text()
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["deny 127.0.0.5/32;",
                                                                               "deny 10.1.0.0/16;"]
    assert "count only" in text and "pattern rule" in text
    bad = {"rules": [{"id": "5", "kind": "ip", "value": "1.2.3.4; include /etc/passwd", "action": "block"}]}
    with pytest.raises(ApplyError, match="not an IP"):
        Applier(cfg).apply(update("emergency_rules", bad, 2))
    assert (tmp_path / "access.conf").read_text() == text  # nothing written


def test_ip_lists_render_as_nginx_access_rules_in_the_gateways_order() -> None:
    def rules(waf: object) -> list[str]:
        return [line for line in render_ip_lists({"waf": waf}).splitlines() if not line.startswith("#")]

    # FORMATS §a.3 step 2: blacklisted → blocked; a non-empty whitelist blocks every other address
    assert rules({"ip_blacklist": ["127.0.0.5", "10.0.0.0/8"]}) == ["deny 127.0.0.5/32;", "deny 10.0.0.0/8;"]
    assert rules({"ip_blacklist": ["127.0.0.5"], "ip_whitelist": ["127.0.0.1", "127.0.0.5"]}) == [
        "deny 127.0.0.5/32;", "allow 127.0.0.1/32;", "allow 127.0.0.5/32;", "deny all;"]  # deny wins: first
    assert rules({"enabled": False, "ip_blacklist": ["127.0.0.5"]}) == []  # waf off: no filter
    # entries the Gateway drops are dropped here too, and their text never reaches nginx
    text = render_ip_lists({"waf": {"ip_blacklist": ["1.2.3.4; include /etc/passwd", "::1"]}})
    assert "passwd" not in text and "entry 1 dropped" in text and "deny ::1/128;" in text
    assert rules({"ip_whitelist": ["nonsense"]}) == []
    assert render_ip_lists(None).count("\n") == 2 and rules({}) == []
    with pytest.raises(ApplyError, match="ip_blacklist is not a list"):
        render_ip_lists({"waf": {"ip_blacklist": "127.0.0.5"}})


def test_emergency_rules_stay_yaml_for_a_yaml_file(tmp_path: Path) -> None:
    cfg = AgentConfig(state_dir=str(tmp_path / "s"), emergency_file=str(tmp_path / "emergency.yaml"))
    Applier(cfg).apply(update("emergency_rules", {"rules": [{"id": "1", "kind": "ip", "value": "127.0.0.5",
                                                            "action": "block"}]}))
    assert "127.0.0.5" in (tmp_path / "emergency.yaml").read_text()


def test_modsecurity_file_replaces_only_the_agents_own_file(cfg: AgentConfig, tmp_path: Path) -> None:
    d = tmp_path / "modsec"
    cfg.modsecurity_dir = str(d)
    d.mkdir()
    (d / "operator.conf").write_text("SecRule ARGS \"@contains x\" \"id:1,deny\"\n")  # the operator's own file
    Applier(cfg).apply(update("modsecurity", {"name": "a.conf", "content": "SecRule A\n"}))
    Applier(cfg).apply(update("modsecurity", {"name": "b.conf", "content": "SecRule B\n"}, 2))
    assert sorted(p.name for p in d.iterdir()) == [".gateway-agent-modsecurity", "b.conf", "operator.conf"]
    assert (d / "b.conf").read_text() == "SecRule B\n"
    cfg.check_command = ["false"]  # a failed check puts the previous file back, under its own name
    with pytest.raises(ApplyError, match="check command exited 1"):
        Applier(cfg).apply(update("modsecurity", {"name": "c.conf", "content": "SecRule C\n"}, 3))
    assert sorted(p.name for p in d.iterdir()) == [".gateway-agent-modsecurity", "b.conf", "operator.conf"]
    cfg.check_command = []
    for name in ("../x.conf", "x.yaml", ".hidden.conf"):
        with pytest.raises(ApplyError, match="is not a plain <name>.conf"):
            Applier(cfg).apply(update("modsecurity", {"name": name, "content": "SecRule X\n"}, 4))
    assert (d / "b.conf").read_text() == "SecRule B\n"
