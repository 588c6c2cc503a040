"""The validator refuses what the Gateway refuses, and says which rule and field, precisely (FORMATS §a, §b)."""

from __future__ import annotations

from pathlib import Path

from waf_config.findings import Report, Severity
from waf_config.formats import RuleAction, RuleCondition, WafRule, WafRuleSet, dump_waf_rules, load_waf_rules
from waf_config.validation import (
    validate_gateway_config,
    validate_modsecurity_file,
    validate_rule_set,
    validate_waf_rules_file,
)

EXAMPLES = Path(__file__).parent / "test_waf_examples"


def rule(rule_id: str, *conditions: RuleCondition, action: str = "block") -> WafRule:
    return WafRule(rule_id, rule_id, "", "high", True, conditions, RuleAction(action, f"{rule_id} hit"))


def cond(field: str, operator: str, value: str, case_sensitive: bool = True) -> RuleCondition:
    return RuleCondition(field, operator, value, case_sensitive)


def only(report: Report, code: str) -> str:
    messages = [f.message for f in report.findings if f.code == code]
    assert len(messages) == 1, report.findings
    return messages[0]


def test_look_around_is_refused_with_the_crates_reason() -> None:
    report = validate_rule_set(WafRuleSet("1.0", (rule("no_lookahead", cond("uri", "regex", "admin(?!/public)")),)))
    finding = report.errors[0]
    assert (finding.rule_id, finding.field, finding.code) == ("no_lookahead", "rules[0].conditions[0].value",
                                                              "regex-dialect")
    assert finding.message == (
        "rule 'no_lookahead': rules[0].conditions[0].value 'admin(?!/public)' is an invalid Rust regex at column 6: "
        "look-around, including look-ahead and look-behind, is not supported; the Gateway rejects the whole file")


def test_python_only_regex_features_are_refused() -> None:
    for pattern in (r"(a)\1", r"(?<=x)y", r"(?>a)", r"end\Z", r"(?P=name)"):
        report = validate_rule_set(WafRuleSet("1.0", (rule("r", cond("uri", "regex", pattern)),)))
        assert [f.code for f in report.errors] == ["regex-dialect"], pattern
    # and Rust-only syntax is accepted
    for pattern in (r"\z", r"(?<name>a)", r"[a-z&&[^aeiou]]", r"\p{Greek}", r"\<word\>"):
        assert validate_rule_set(WafRuleSet("1.0", (rule("r", cond("uri", "regex", pattern)),))).ok, pattern


def test_an_unknown_operator_is_an_error_although_the_gateway_loads_it() -> None:
    report = validate_rule_set(WafRuleSet("1.0", (rule("typo", cond("uri", "startswith", "/admin")),)))
    assert report.errors[0].field == "rules[0].conditions[0].operator"
    assert only(report, "unknown-operator").startswith(
        "rule 'typo': rules[0].conditions[0].operator 'startswith' is unknown: the Gateway loads it but the rule "
        "never fires")


def test_unknown_field_and_bad_action_type() -> None:
    report = validate_rule_set(WafRuleSet("1.0", (
        rule("body", cond("body", "contains", "x")),
        rule("upper", cond("uri", "contains", "x"), action="Block"),
    )))
    assert {(f.rule_id, f.code) for f in report.errors} == {("body", "unknown-field"), ("upper", "action-type")}


def test_a_missing_metadata_is_an_error_in_the_exact_file() -> None:
    text = dump_waf_rules(WafRuleSet("1.0", (rule("r1", cond("uri", "contains", "x")),)))
    assert validate_waf_rules_file(text).ok
    broken = text.replace("    metadata: {}\n", "", 1)
    report = validate_waf_rules_file(broken)
    finding = report.errors[0]
    assert (finding.rule_id, finding.field, finding.code) == ("r1", "rules[0].metadata", "missing-metadata")
    assert finding.message == ("rule 'r1': required key 'rules[0].metadata' is missing; the Gateway rejects the whole "
                               "file without it (write metadata: {})")


def test_shipped_rules_semantics() -> None:
    report = validate_waf_rules_file((EXAMPLES / "waf-rules.yaml").read_text())
    assert {f.code for f in report.errors} == {"missing-metadata"}
    assert only(report, "rate-limit") == ("rule 'rate_limit_api': action rate_limit answers 429 to every matching "
                                          "request; it is not a counter")
    case = [f for f in report.warnings if f.code == "case-sensitive-regex"]
    assert [(f.rule_id, f.field) for f in case] == [("method_not_allowed", "rules[8].conditions[0].case_sensitive")]


def test_duplicates_and_shadowing() -> None:
    report = validate_rule_set(WafRuleSet("1.0", (
        rule("admin", cond("uri", "starts_with", "/admin")),
        rule("admin_users", cond("uri", "starts_with", "/admin/users"), cond("method", "equals", "POST")),
        rule("admin", cond("uri", "contains", "x"), action="log"),
        rule("api_all", cond("uri", "regex", "^/api/")),
        rule("api_exact", cond("uri", "equals", "/api/v1")),
    )))
    dups = [f for f in report.errors if f.code == "duplicate-id"]
    assert [f.field for f in dups] == ["rules[0].id", "rules[2].id"]
    shadowed = {f.rule_id: f.message for f in report.warnings if f.code == "shadowed"}
    assert set(shadowed) == {"admin_users", "api_exact"}
    assert shadowed["admin_users"] == ("rule 'admin_users' can never fire: earlier rule 'admin' (block) matches "
                                       "every request it matches and ends evaluation")


def test_numeric_operators_need_rust_numbers() -> None:
    report = validate_rule_set(WafRuleSet("1.0", (
        rule("ok", cond("content_length", "greater_than", "1e6")),
        rule("blank", cond("content_length", "greater_than", " 10")),
        rule("underscore", cond("content_length", "less_than", "1_000")),
    )))
    assert sorted(f.rule_id for f in report.errors if f.code == "not-a-number") == ["blank", "underscore"]


def test_secrule_subset() -> None:
    text = "\n".join([
        'SecRule REQUEST_URI "@beginsWith /upload" "chain,id:1001,msg:\'Upload\',severity:WARNING"',
        'SecRule REQUEST_HEADERS:Content-Length "@gt 100" "block"',
        'SecRule ARGS "@rx a\\"b" "id:1002,msg:\'quote\',block"',
        "SecRule ARGS \"@rx x\" \"id:1003,msg:'one, two',block\"",
        'SecRule REMOTE_ADDR "@ipMatch 10.0.0.0/8" "id:1004,msg:\'net\',block"',
        'SecRule ARGS "@rx (?=x)" "id:1005,msg:\'lookahead\',block"',
    ])
    report = validate_modsecurity_file(text, "custom.conf")
    errors = {(f.rule_id, f.code) for f in report.errors}
    assert ("1001", "chain") in errors
    assert ("1003", "msg-comma") in errors
    assert ("1004", "secrule-variable") in errors and ("1004", "secrule-operator") in errors
    assert ("1005", "regex-dialect") in errors
    assert any(f.code == "escaped-quote" and f.line == 3 for f in report.errors)
    chain = next(f for f in report.errors if f.code == "chain")
    assert chain.message == ("custom.conf:1: rule 1001 uses 'chain', which the Gateway does not support: this line "
                             "logs on its own; the next line (rule unknown, block) becomes a standalone rule")
    assert chain.severity is Severity.ERROR and chain.line == 1


def test_gateway_yaml_as_shipped_is_refused_for_the_documented_reasons() -> None:
    report = validate_gateway_config((EXAMPLES / "gateway.yaml").read_text())
    assert len(report.errors) == 21  # 17 string durations + contact_email + 3 modsecurity keys (FORMATS §b.1)
    first = next(f for f in report.errors if f.field == "server.connection_timeout")
    assert first.message == ("gateway.yaml: duration 'server.connection_timeout' is written as the string '30s'; the "
                             "Gateway only accepts {secs: 30, nanos: 0}")


def test_gateway_yaml_semantic_checks() -> None:
    from waf_config.gateway_config import dump_gateway_config, load_gateway_config

    good = dump_gateway_config(load_gateway_config((EXAMPLES / "gateway.yaml").read_text()).value)
    assert validate_gateway_config(good).ok
    bad = good.replace('worker_threads: 4', 'worker_threads: 0').replace('"10.0.0.0/8"', '"10.0.0.0/33"')
    report = validate_gateway_config(bad)
    assert [f.field for f in report.errors] == ["server.worker_threads"]
    assert any(f.code == "ip-entry" and f.field == "waf.ip_blacklist[1]" for f in report.warnings)


def test_imported_examples_can_be_made_valid() -> None:
    imported = load_waf_rules((EXAMPLES / "waf-rules.yaml").read_text()).value
    report = validate_rule_set(imported)
    assert report.ok, report.errors
