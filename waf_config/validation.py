"""Validation with the Gateway's own rules (FORMATS §a, §b): every finding names the rule, the field and a severity.

Errors are what the Gateway rejects (the whole waf-rules.yaml then falls back to 3 built-in rules) or what can
never behave as written (an unknown operator loads but never fires). Warnings are rules that load and behave,
but not as they read: ``case_sensitive`` on a regex, ``rate_limit`` answering 429 on every match, a rule shadowed
by an earlier ``block``, a SecRule ``allow`` that allows nothing.
"""

from __future__ import annotations

from collections import Counter

from waf_config.findings import Report
from waf_config.formats import (
    ACTION_TYPES,
    OPERATORS,
    STRING_OPERATORS,
    RuleCondition,
    WafRule,
    WafRuleSet,
    is_known_field,
    parse_rust_f64,
    read_waf_rules,
)
from waf_config.gateway_config import read_gateway_config
from waf_config.modsecurity import BUILTIN_RULE_LINES, ModSecFile, parse_secrule, read_modsecurity
from waf_config.rust_regex import compile_rust, dialect_warnings, rust_regex_error

NUMERIC_FIELDS = ("content_length",)


def _condition_findings(rule: WafRule, index: int, cond: RuleCondition, report: Report) -> None:
    path = f"rules[{index}].conditions"
    i = rule.conditions.index(cond)
    where = f"{path}[{i}]"
    rid = rule.id
    if not cond.field:
        report.error("empty-field", f"rule {rid!r}: {where}.field is empty; the Gateway rejects the file",
                     rule_id=rid, field=f"{where}.field")
    elif not is_known_field(cond.field):
        report.error("unknown-field", f"rule {rid!r}: {where}.field {cond.field!r} is not a Gateway field (uri, "
                     "method, ip, user_agent, content_type, content_length, header.<Name>, query.<name>); the rule "
                     "errors at runtime and never fires", rule_id=rid, field=f"{where}.field")
    if not cond.operator:
        report.error("empty-operator", f"rule {rid!r}: {where}.operator is empty; the Gateway rejects the file",
                     rule_id=rid, field=f"{where}.operator")
    elif cond.operator not in OPERATORS:
        report.error("unknown-operator", f"rule {rid!r}: {where}.operator {cond.operator!r} is unknown: the Gateway "
                     f"loads it but the rule never fires (operators: {', '.join(OPERATORS)})", rule_id=rid,
                     field=f"{where}.operator")
    if cond.operator == "regex":
        error = rust_regex_error(cond.value)
        if error is not None:
            report.error("regex-dialect", f"rule {rid!r}: {where}.value {cond.value!r} is an {error}; the Gateway "
                         "rejects the whole file", rule_id=rid, field=f"{where}.value")
        for note in dialect_warnings(cond.value):
            report.warning("regex-meaning", f"rule {rid!r}: {where}.value: {note}", rule_id=rid,
                           field=f"{where}.value")
        if not cond.case_sensitive and "(?i" not in cond.value:
            report.warning("case-sensitive-regex", f"rule {rid!r}: {where}.case_sensitive: false is ignored for "
                           "regex: the pattern matches case-sensitively; write (?i) in the pattern",
                           rule_id=rid, field=f"{where}.case_sensitive")
    if cond.operator in ("greater_than", "less_than"):
        if parse_rust_f64(cond.value) is None:
            report.error("not-a-number", f"rule {rid!r}: {where}.value {cond.value!r} does not parse as a number; "
                         "the rule errors on every request and never fires", rule_id=rid, field=f"{where}.value")
        if cond.field not in NUMERIC_FIELDS:
            report.warning("numeric-field", f"rule {rid!r}: {where}: {cond.operator} on {cond.field!r} errors (and "
                           "the rule is skipped) whenever the value is not a number", rule_id=rid,
                           field=f"{where}.field")


def _implies(later: RuleCondition, earlier: RuleCondition) -> bool:
    """True when every request matching ``later`` also matches ``earlier`` (a safe, partial check)."""
    if later.field != earlier.field:
        return False
    if earlier.operator == "regex":
        if later.operator == "regex":
            return later.value == earlier.value
        if later.operator == "equals" and later.case_sensitive:
            try:
                return compile_rust(earlier.value).is_match(later.value)
            except ValueError:
                return False
        return False
    if earlier.operator not in STRING_OPERATORS or later.operator not in STRING_OPERATORS:
        return later == earlier
    if earlier.case_sensitive != later.case_sensitive:
        return False
    a = earlier.value if earlier.case_sensitive else earlier.value.lower()
    b = later.value if later.case_sensitive else later.value.lower()
    if earlier.operator == "contains":
        return a in b
    if earlier.operator == "starts_with":
        return later.operator in ("starts_with", "equals") and b.startswith(a)
    if earlier.operator == "ends_with":
        return later.operator in ("ends_with", "equals") and b.endswith(a)
    return later.operator == "equals" and a == b


def _shadowing(rule_set: WafRuleSet, report: Report) -> None:
    stoppers: list[WafRule] = []
    for index, rule in enumerate(rule_set.rules):
        if not rule.enabled or not rule.conditions:
            continue
        for earlier in stoppers:
            if all(any(_implies(mine, theirs) for mine in rule.conditions) for theirs in earlier.conditions):
                report.warning("shadowed", f"rule {rule.id!r} can never fire: earlier rule {earlier.id!r} "
                               f"({earlier.action.action_type}) matches every request it matches and ends evaluation",
                               rule_id=rule.id, field=f"rules[{index}]")
                break
        if rule.action.action_type in ("block", "rate_limit"):
            stoppers.append(rule)


def validate_rule_set(rule_set: WafRuleSet) -> Report:
    """Semantic checks of a typed rule set (what import cannot see)."""
    report = Report()
    counts = Counter(r.id for r in rule_set.rules)
    for index, rule in enumerate(rule_set.rules):
        rid = rule.id
        if not rid:
            report.error("empty-id", f"rules[{index}].id is empty; the Gateway rejects the file",
                         field=f"rules[{index}].id")
        elif counts[rid] > 1:
            report.error("duplicate-id", f"rule {rid!r}: id used by {counts[rid]} rules; the Gateway does not "
                         "check, but its counters, log lines and replay reports then mix them up", rule_id=rid,
                         field=f"rules[{index}].id")
        if not rule.conditions:
            report.error("no-conditions", f"rule {rid!r}: rules[{index}].conditions is empty; the Gateway rejects "
                         "the file", rule_id=rid, field=f"rules[{index}].conditions")
        if rule.action.action_type not in ACTION_TYPES:
            report.error("action-type", f"rule {rid!r}: rules[{index}].action.action_type "
                         f"{rule.action.action_type!r} must be exactly one of {', '.join(ACTION_TYPES)}; the "
                         "Gateway rejects the file", rule_id=rid, field=f"rules[{index}].action.action_type")
        elif rule.action.action_type == "rate_limit" and rule.enabled:
            report.warning("rate-limit", f"rule {rid!r}: action rate_limit answers 429 to every matching request; "
                           "it is not a counter", rule_id=rid, field=f"rules[{index}].action.action_type")
        for cond in rule.conditions:
            _condition_findings(rule, index, cond, report)
    _shadowing(rule_set, report)
    return report


def validate_waf_rules_file(text: str) -> Report:
    """Everything the Gateway's loader rejects in these exact bytes, then the semantic checks."""
    rule_set, report = read_waf_rules(text, strict=True)
    if rule_set is None:
        lenient, _ = read_waf_rules(text, strict=False)
        rule_set = lenient
    if rule_set is not None:
        report.extend(validate_rule_set(rule_set).findings)
    return report


_BUILTIN_IDS = {r.id for r in (parse_secrule(line) for line in BUILTIN_RULE_LINES) if r is not None}


def validate_modsecurity_file(text: str, name: str = "rules.conf") -> Report:
    """The Gateway subset: no chain, no escaped quotes, no comma in msg, supported variables/operators, regexes."""
    file, report = read_modsecurity(text, name, strict=True)
    _modsecurity_rule_checks(file, report)
    return report


def _modsecurity_rule_checks(file: ModSecFile, report: Report) -> None:
    seen: Counter[str] = Counter()
    for index, rule in enumerate(file.rules):
        where = f"{file.name}:{rule.line}"
        seen[rule.id] += 1
        if rule.operator == "@rx":
            error = rust_regex_error(rule.operator_arg)
            if error is not None:
                report.error("regex-dialect", f"{where}: rule {rule.id}: {rule.operator_arg!r} is an {error}; the "
                             "Gateway falls back to a case-insensitive substring match of the raw text",
                             rule_id=rule.id, field="operator", line=rule.line)
        if rule.id != "unknown" and rule.id in _BUILTIN_IDS:
            report.warning("builtin-id", f"{where}: rule id {rule.id} is also a built-in rule's id", rule_id=rule.id,
                           field="actions.id", line=rule.line)
        elif rule.id != "unknown" and seen[rule.id] == 2:
            report.warning("duplicate-id", f"{where}: rule id {rule.id} is used more than once in {file.name}",
                           rule_id=rule.id, field="actions.id", line=rule.line)
        blocking_after = sum(1 for later in file.rules[index + 1:] if later.outcome == "block")
        if rule.outcome == "log" and blocking_after:
            report.warning("log-stops", f"{where}: rule {rule.id} is log-only: a request it matches stops "
                           f"ModSecurity evaluation, so the {blocking_after} blocking rule(s) after it never see that "
                           "request", rule_id=rule.id, field="actions", line=rule.line)


def validate_gateway_config(text: str) -> Report:
    """FORMATS §b: every key present, right types, durations as {secs, nanos}, GatewayConfig::validate."""
    _, report = read_gateway_config(text, strict=True)
    return report
