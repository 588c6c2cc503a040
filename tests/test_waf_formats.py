"""Import and export of the Gateway's files (FORMATS §a.2, §a.4, §b): the shipped examples import with the
expected warnings, and what we export passes a check of §a.2 written here, independently of waf_config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from waf_config.findings import FormatError, Severity
from waf_config.formats import (
    RuleAction,
    RuleCondition,
    WafRule,
    WafRuleSet,
    dump_waf_rules,
    load_waf_rules,
    read_waf_rules,
)
from waf_config.gateway_config import dump_gateway_config, load_gateway_config
from waf_config.modsecurity import build_secrule, load_modsecurity, parse_secrule, render_secrule, tokenize

EXAMPLES = Path(__file__).parent / "test_waf_examples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "examples" / "gateway" / "config"
EXAMPLE_RULE_IDS = ["sql_injection_basic", "xss_basic", "directory_traversal", "command_injection", "file_inclusion",
                    "suspicious_user_agent", "large_request_body", "suspicious_headers", "method_not_allowed",
                    "rate_limit_api"]


def example(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8")


# -- FORMATS §a.2, encoded here on its own: the keys and types the Gateway's serde structs require ---------------

def assert_gateway_accepts_waf_rules(text: str) -> None:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    assert isinstance(doc["version"], str)
    assert isinstance(doc["rules"], list)
    for rule in doc["rules"]:
        for key in ("id", "name", "description", "severity"):
            assert isinstance(rule[key], str), key
        assert rule["id"] != ""
        assert isinstance(rule["enabled"], bool)
        assert isinstance(rule["conditions"], list) and rule["conditions"]
        for cond in rule["conditions"]:
            assert isinstance(cond["field"], str) and cond["field"]
            assert isinstance(cond["operator"], str) and cond["operator"]
            assert isinstance(cond["value"], str)
            assert isinstance(cond["case_sensitive"], bool)
        action = rule["action"]
        assert action["action_type"] in ("block", "log", "rate_limit")
        assert isinstance(action["message"], str)
        if action.get("score") is not None:
            assert isinstance(action["score"], int) and 0 <= action["score"] < 2**32
        for mapping in (rule["metadata"], action["metadata"]):
            assert isinstance(mapping, dict)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


def test_copies_match_the_shared_examples() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared/ is not beside this clone")
    for name in ("waf-rules.yaml", "gateway.yaml"):
        assert (EXAMPLES / name).read_bytes() == (SHARED / name).read_bytes()
    for conf in (SHARED / "modsecurity" / "custom").glob("*.conf"):
        assert (EXAMPLES / conf.name).read_bytes() == conf.read_bytes()


def test_shipped_waf_rules_import_with_a_warning_per_missing_metadata() -> None:
    imported = load_waf_rules(example("waf-rules.yaml"))
    assert [r.id for r in imported.value.rules] == EXAMPLE_RULE_IDS
    findings = imported.report.findings
    assert all(f.severity is Severity.WARNING for f in findings)
    missing = {(f.rule_id, f.field) for f in findings if f.code == "missing-metadata"}
    expected = {(rid, f"rules[{i}].metadata") for i, rid in enumerate(EXAMPLE_RULE_IDS)}
    expected |= {(rid, f"rules[{i}].action.metadata") for i, rid in enumerate(EXAMPLE_RULE_IDS)}
    assert missing == expected
    first = next(f for f in findings if f.field == "rules[0].metadata")
    assert "rule 'sql_injection_basic'" in first.message and "metadata" in first.message
    large = imported.value.rules[6]
    assert large.conditions[0] == RuleCondition("content_length", "greater_than", "50000000", False)
    assert large.action.score == 30 and large.metadata == {} and large.action.metadata == {}


def test_the_gateway_loader_would_reject_the_shipped_file() -> None:
    rule_set, report = read_waf_rules(example("waf-rules.yaml"), strict=True)
    assert rule_set is None
    assert len(report.errors) == 20 and {f.code for f in report.errors} == {"missing-metadata"}


def test_export_is_what_the_gateway_accepts_and_round_trips() -> None:
    imported = load_waf_rules(example("waf-rules.yaml")).value
    text = dump_waf_rules(imported)
    assert_gateway_accepts_waf_rules(text)
    assert text.count("metadata: {}") == 2 * len(EXAMPLE_RULE_IDS)
    again = load_waf_rules(text)
    assert again.report.findings == []
    assert again.value == imported
    assert dump_waf_rules(again.value) == text
    # the regex survives byte for byte (backslashes and all)
    assert yaml.safe_load(text)["rules"][0]["conditions"][0]["value"] == \
        r"(?i)(union\s+select|drop\s+table|delete\s+from|insert\s+into|exec\s*\(|sp_)"


def test_export_quotes_awkward_strings_faithfully() -> None:
    awkward = ['a "quoted" \\ value', "tab\there", "yes", "010", "null", "#not a comment", "ünïcødé ✓", "",
               "\x7f\u2028"]
    rules = tuple(
        WafRule(f"r{i}", s, s, "low", True, (RuleCondition("uri", "contains", s, True),),
                RuleAction("log", s, None, {s or "k": s}), {"k": s})
        for i, s in enumerate(awkward)
    )
    rule_set = WafRuleSet("1.0", rules)
    text = dump_waf_rules(rule_set)
    assert_gateway_accepts_waf_rules(text)
    assert load_waf_rules(text).value == rule_set


def test_numbers_where_strings_belong_are_normalised_with_a_warning() -> None:
    text = example("waf-rules.yaml").replace('value: "50000000"  # 50MB', "value: 50000000")
    imported = load_waf_rules(text)
    warning = next(f for f in imported.report.findings if f.code == "number-as-string")
    assert warning.rule_id == "large_request_body"
    assert warning.field == "rules[6].conditions[0].value"
    assert imported.value.rules[6].conditions[0].value == "50000000"


def test_yaml_12_booleans_only() -> None:
    text = dump_waf_rules(load_waf_rules(example("waf-rules.yaml")).value).replace("enabled: true", "enabled: yes", 1)
    with pytest.raises(FormatError) as exc:
        load_waf_rules(text)
    assert "rule 'sql_injection_basic': 'rules[0].enabled' must be true or false" in str(exc.value)


def test_a_missing_required_key_is_an_error_naming_rule_and_field() -> None:
    text = example("waf-rules.yaml").replace('        case_sensitive: true\n', "", 1)
    with pytest.raises(FormatError) as exc:
        load_waf_rules(text)
    finding = next(f for f in exc.value.findings if f.severity is Severity.ERROR)
    assert finding.rule_id == "directory_traversal"
    assert finding.field == "rules[2].conditions[0].case_sensitive"


def test_gateway_yaml_imports_with_duration_and_missing_key_warnings() -> None:
    imported = load_gateway_config(example("gateway.yaml"))
    codes = Counter_of(imported.report.findings)
    assert codes["duration-string"] == 17  # FORMATS §b.1: 17 durations written as strings
    missing = sorted(f.field for f in imported.report.findings if f.code == "missing-key")
    assert missing == ["ssl.acme.contact_email", "waf.modsecurity.auto_update_owasp_crs",
                       "waf.modsecurity.owasp_crs_repo_url", "waf.modsecurity.owasp_crs_version"]
    doc = imported.value.document
    assert doc["server"]["connection_timeout"] == {"secs": 30, "nanos": 0}
    assert doc["waf"]["modsecurity"]["owasp_crs_version"] == "v4.3.0"
    exported = dump_gateway_config(imported.value)
    assert "connection_timeout: {secs: 30, nanos: 0}" in exported
    assert load_gateway_config(exported).value == imported.value
    reread = yaml.safe_load(exported)
    assert set(reread) == {"server", "waf", "cache", "database", "auth", "monitoring", "plugins", "upstream", "ssl",
                           "ingress"}


def Counter_of(findings: list) -> dict[str, int]:  # noqa: N802
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    return counts


def test_secrule_tokenizer_matches_formats() -> None:
    assert tokenize('SecRule ARGS "@rx a b" "id:1,block"') == ["SecRule", "ARGS", "@rx a b", "id:1,block"]
    rule = parse_secrule('SecRule REQUEST_HEADERS:X-API-Key "@eq \'\'" "block"')
    assert rule is not None and rule.operator == "@eq" and rule.operator_arg == "''" and rule.id == "unknown"
    assert parse_secrule("SecRuleEngine On") is None
    assert parse_secrule("# SecRule ARGS \"x\" \"id:1\"") is None
    no_at = parse_secrule('SecRule ARGS "evil" "id:7,severity:ERROR"')
    assert no_at is not None and (no_at.operator, no_at.operator_arg, no_at.outcome) == ("@rx", "evil", "block")
    assert parse_secrule('SecRule ARGS "x" "id:8,severity:error"').outcome == "log"  # type: ignore[union-attr]


def test_shipped_conf_files_import_with_warnings() -> None:
    imported = load_modsecurity(example("200-custom-blocks.conf"), "200-custom-blocks.conf")
    assert all(f.severity is Severity.WARNING for f in imported.report.findings)
    chain = next(f for f in imported.report.findings if f.code == "chain")
    assert chain.rule_id == "200031" and chain.line == 17
    assert "the next line (rule unknown, block) becomes a standalone rule" in chain.message
    count = next(f for f in imported.report.findings if f.code == "secrule-operator")
    assert count.rule_id == "200041" and "'@count'" in count.message
    assert len(imported.value.rules) == 13
    allow = load_modsecurity(example("100-custom-allow.conf"), "100-custom-allow.conf")
    assert {f.code for f in allow.report.findings} == {"secrule-allow"}
    app = load_modsecurity(example("300-application-specific.conf"), "300.conf")
    payment = [r for r in app.value.rules if r.line in (38, 39)]
    assert [(r.id, r.outcome) for r in payment] == [("300091", "block"), ("unknown", "block")]


def test_secrule_export_is_one_parseable_line() -> None:
    rule = build_secrule(["REQUEST_URI", "ARGS"], "@rx", "(?i)wp-admin", rule_id="900001", msg="Admin probe")
    line = render_secrule(rule)
    assert line == "SecRule REQUEST_URI|ARGS \"@rx (?i)wp-admin\" \"id:900001,msg:'Admin probe',severity:CRITICAL," \
        "phase:2,block\""
    assert parse_secrule(line) == rule
    with pytest.raises(ValueError, match="msg cannot contain ','"):
        build_secrule(["ARGS"], "@rx", "x", rule_id="900002", msg="a, b")
    text = example("100-custom-allow.conf")
    assert load_modsecurity(text).value.text == text  # byte-faithful: the Gateway reads lines verbatim
