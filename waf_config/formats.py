"""The Gateway's ``waf-rules.yaml``: typed dataclasses, import (normalising, with findings) and export.

Schema and semantics: FORMATS §a.2. The Gateway's loader (serde_yaml 0.9) requires every non-``Option`` key,
``metadata`` maps on rules and actions included, and rejects the whole file on one bad rule. ``load_waf_rules``
reads what people and old files write and says what it had to fix; ``dump_waf_rules`` writes only what the
Gateway accepts. The ModSecurity and gateway.yaml formats live in ``modsecurity`` and ``gateway_config``; their
entry points are re-exported here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from waf_config.findings import FormatError, Imported, Report
from waf_config.yaml12 import (
    BOOL_TAG,
    STR_TAG,
    YamlSyntaxError,
    compose,
    is_null,
    kind_of,
    line_of,
    mapping_entries,
    quote,
    to_int,
)

ACTION_TYPES = ("block", "log", "rate_limit")
OPERATORS = ("equals", "contains", "starts_with", "ends_with", "regex", "greater_than", "less_than")
STRING_OPERATORS = ("equals", "contains", "starts_with", "ends_with")
SIMPLE_FIELDS = ("uri", "method", "ip", "user_agent", "content_type", "content_length")
FIELD_PREFIXES = ("header.", "query.")
U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class RuleCondition:
    field: str
    operator: str
    value: str
    case_sensitive: bool


@dataclass(frozen=True, slots=True)
class RuleAction:
    action_type: str
    message: str
    score: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WafRule:
    id: str
    name: str
    description: str
    severity: str
    enabled: bool
    conditions: tuple[RuleCondition, ...]
    action: RuleAction
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WafRuleSet:
    version: str
    rules: tuple[WafRule, ...]


def is_known_field(name: str) -> bool:
    return name in SIMPLE_FIELDS or any(name.startswith(p) and len(name) > len(p) for p in FIELD_PREFIXES)


# ---------------------------------------------------------------------------------------------------- reading


class _Reader:
    """Walks composed YAML nodes against FORMATS §a.2.

    ``strict``: report what the Gateway's loader rejects as errors (validation of exact bytes).
    Otherwise (import): normalise what has one obvious meaning — a missing ``metadata`` map, a number written
    where a string is required — and report it as a warning naming the rule and the field.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.report = Report()
        self.failed = False

    def _fail(self, code: str, message: str, node: Node | None, rule_id: str | None, path: str) -> None:
        self.failed = True
        self.report.error(code, message, rule_id=rule_id, field=path, line=line_of(node) if node else None)

    def _fixable(self, code: str, message: str, node: Node | None, rule_id: str | None, path: str) -> None:
        if self.strict:
            self._fail(code, message, node, rule_id, path)
        else:
            self.report.warning(code, message + " — normalised on import", rule_id=rule_id, field=path,
                                line=line_of(node) if node else None)

    def fields(self, node: Node, known: tuple[str, ...], rule_id: str | None, path: str, what: str) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self._fail("type", f"{what} {path} must be a mapping, not {kind_of(node)}", node, rule_id, path)
            return {}
        entries, duplicates = mapping_entries(node)
        for dup in duplicates:
            self._fail("duplicate-key", f"{what}: key '{dup.key}' appears twice in {path}; the Gateway's "
                       "loader rejects duplicate keys", dup.key_node, rule_id, f"{path}.{dup.key}")
        for entry in entries:
            if entry.key not in known:
                self.report.warning("unknown-key", f"{what}: unknown key '{entry.key}' in {path} is ignored by the "
                                    "Gateway (a typo?)", rule_id=rule_id, field=f"{path}.{entry.key}",
                                    line=line_of(entry.key_node))
        return {e.key: e.value for e in entries}

    def string(self, m: dict[str, Node], key: str, rule_id: str | None, path: str, what: str,
               parent: Node) -> str | None:
        node = m.get(key)
        where = f"{path}.{key}"
        if node is None:
            self._fail("missing-key", f"{what}: required key '{where}' is missing (FORMATS §a.2)", parent,
                       rule_id, where)
            return None
        if not isinstance(node, ScalarNode) or is_null(node):
            self._fail("type", f"{what}: '{where}' must be a string, not {kind_of(node)}", node, rule_id, where)
            return None
        if node.tag != STR_TAG:
            self._fixable("number-as-string", f"{what}: '{where}' is {kind_of(node)} ({node.value}); the Gateway "
                          f"requires a string, e.g. \"{node.value}\"", node, rule_id, where)
        return str(node.value)

    def boolean(self, m: dict[str, Node], key: str, rule_id: str | None, path: str, what: str,
                parent: Node) -> bool | None:
        node = m.get(key)
        where = f"{path}.{key}"
        if node is None:
            self._fail("missing-key", f"{what}: required key '{where}' is missing (FORMATS §a.2)", parent,
                       rule_id, where)
            return None
        if not isinstance(node, ScalarNode) or node.tag != BOOL_TAG:
            shown = f" ({node.value!r})" if isinstance(node, ScalarNode) else ""
            self._fail("type", f"{what}: '{where}' must be true or false, not {kind_of(node)}{shown}", node,
                       rule_id, where)
            return None
        return node.value.lower() == "true"

    def string_map(self, m: dict[str, Node], key: str, rule_id: str | None, path: str, what: str,
                   parent: Node) -> dict[str, str] | None:
        node = m.get(key)
        where = f"{path}.{key}"
        if node is None:
            self._fixable("missing-metadata", f"{what}: required key '{where}' is missing; the Gateway rejects the "
                          "whole file without it (write metadata: {})", parent, rule_id, where)
            return {}
        if not isinstance(node, MappingNode):
            self._fail("type", f"{what}: '{where}' must be a mapping of strings, not {kind_of(node)}", node,
                       rule_id, where)
            return None
        result: dict[str, str] = {}
        entries, duplicates = mapping_entries(node)
        for dup in duplicates:
            self._fail("duplicate-key", f"{what}: key '{dup.key}' appears twice in {where}", dup.key_node,
                       rule_id, f"{where}.{dup.key}")
        for entry in entries:
            value = entry.value
            if not isinstance(value, ScalarNode) or is_null(value):
                self._fail("type", f"{what}: '{where}.{entry.key}' must be a string, not {kind_of(value)}", value,
                           rule_id, f"{where}.{entry.key}")
                continue
            if value.tag != STR_TAG:
                self._fixable("number-as-string", f"{what}: '{where}.{entry.key}' is {kind_of(value)}; metadata "
                              "values must be strings", value, rule_id, f"{where}.{entry.key}")
            result[entry.key] = str(value.value)
        return result

    def score(self, m: dict[str, Node], rule_id: str | None, path: str, what: str) -> int | None:
        node = m.get("score")
        if node is None or is_null(node):
            return None
        value = to_int(node) if isinstance(node, ScalarNode) else None
        if value is None or not 0 <= value <= U32_MAX:
            self._fail("type", f"{what}: '{path}.score' must be an integer from 0 to {U32_MAX} (u32) or absent",
                       node, rule_id, f"{path}.score")
            return None
        return value

    def condition(self, node: Node, rule_id: str | None, path: str, what: str) -> RuleCondition | None:
        m = self.fields(node, ("field", "operator", "value", "case_sensitive"), rule_id, path, what)
        if not m:
            return None
        values = (
            self.string(m, "field", rule_id, path, what, node),
            self.string(m, "operator", rule_id, path, what, node),
            self.string(m, "value", rule_id, path, what, node),
            self.boolean(m, "case_sensitive", rule_id, path, what, node),
        )
        if any(v is None for v in values):
            return None
        return RuleCondition(*values)  # type: ignore[arg-type]

    def action(self, node: Node, rule_id: str | None, path: str, what: str) -> RuleAction | None:
        m = self.fields(node, ("action_type", "message", "score", "metadata"), rule_id, path, what)
        if not m:
            return None
        action_type = self.string(m, "action_type", rule_id, path, what, node)
        message = self.string(m, "message", rule_id, path, what, node)
        score = self.score(m, rule_id, path, what)
        metadata = self.string_map(m, "metadata", rule_id, path, what, node)
        if action_type is None or message is None or metadata is None:
            return None
        return RuleAction(action_type, message, score, metadata)

    def rule(self, node: Node, index: int) -> WafRule | None:
        path = f"rules[{index}]"
        rule_id = None
        if isinstance(node, MappingNode):
            id_node = next((e.value for e in mapping_entries(node)[0] if e.key == "id"), None)
            if isinstance(id_node, ScalarNode) and not is_null(id_node):
                rule_id = id_node.value
        what = f"rule {rule_id!r}" if rule_id is not None else f"rule #{index + 1}"
        known = ("id", "name", "description", "severity", "enabled", "conditions", "action", "metadata")
        m = self.fields(node, known, rule_id, path, what)
        if not m:
            return None
        rid = self.string(m, "id", rule_id, path, what, node)
        name = self.string(m, "name", rule_id, path, what, node)
        description = self.string(m, "description", rule_id, path, what, node)
        severity = self.string(m, "severity", rule_id, path, what, node)
        enabled = self.boolean(m, "enabled", rule_id, path, what, node)
        conditions: list[RuleCondition] = []
        cond_node = m.get("conditions")
        if cond_node is None:
            self._fail("missing-key", f"{what}: required key '{path}.conditions' is missing", node, rule_id,
                       f"{path}.conditions")
        elif not isinstance(cond_node, SequenceNode):
            self._fail("type", f"{what}: '{path}.conditions' must be a list, not {kind_of(cond_node)}", cond_node,
                       rule_id, f"{path}.conditions")
        else:
            for i, c in enumerate(cond_node.value):
                cond = self.condition(c, rule_id, f"{path}.conditions[{i}]", what)
                if cond is not None:
                    conditions.append(cond)
        action = None
        if "action" not in m:
            self._fail("missing-key", f"{what}: required key '{path}.action' is missing", node, rule_id,
                       f"{path}.action")
        else:
            action = self.action(m["action"], rule_id, f"{path}.action", what)
        metadata = self.string_map(m, "metadata", rule_id, path, what, node)
        if None in (rid, name, description, severity, enabled, action, metadata):
            return None
        return WafRule(rid, name, description, severity, enabled, tuple(conditions), action,  # type: ignore[arg-type]
                       metadata)  # type: ignore[arg-type]

    def rule_set(self, root: Node | None) -> WafRuleSet | None:
        if root is None:
            self._fail("empty", "waf-rules.yaml is empty; the Gateway needs 'version' and 'rules'", None, None, "")
            return None
        m = self.fields(root, ("version", "rules"), None, "", "waf-rules.yaml")
        if not m:
            return None
        version = self.string(m, "version", None, "", "waf-rules.yaml", root)
        rules_node = m.get("rules")
        rules: list[WafRule] = []
        if rules_node is None:
            self._fail("missing-key", "waf-rules.yaml: required key 'rules' is missing", root, None, "rules")
        elif not isinstance(rules_node, SequenceNode):
            self._fail("type", f"waf-rules.yaml: 'rules' must be a list, not {kind_of(rules_node)}", rules_node,
                       None, "rules")
        else:
            for i, r in enumerate(rules_node.value):
                rule = self.rule(r, i)
                if rule is not None:
                    rules.append(rule)
        if version is None or self.failed:
            return None
        return WafRuleSet(version, tuple(rules))


def read_waf_rules(text: str, *, strict: bool) -> tuple[WafRuleSet | None, Report]:
    """Read ``text``; ``strict`` reports everything the Gateway's loader rejects as an error."""
    reader = _Reader(strict)
    try:
        root = compose(text)
    except YamlSyntaxError as exc:
        reader.report.error("yaml", f"waf-rules.yaml: {exc}", line=exc.line)
        return None, reader.report
    return reader.rule_set(root), reader.report


def load_waf_rules(text: str) -> Imported[WafRuleSet]:
    """Import a waf-rules.yaml, normalising what has one meaning (warnings); raises FormatError otherwise."""
    rule_set, report = read_waf_rules(text, strict=False)
    if rule_set is None:
        raise FormatError("cannot import waf-rules.yaml", report.findings)
    return Imported(rule_set, report)


# ---------------------------------------------------------------------------------------------------- writing


def _map_lines(metadata: dict[str, str], indent: str) -> list[str]:
    if not metadata:
        return [f"{indent}metadata: {{}}"]
    return [f"{indent}metadata:"] + [f"{indent}  {quote(k)}: {quote(v)}" for k, v in metadata.items()]


def dump_waf_rules(rule_set: WafRuleSet) -> str:
    """The file the Gateway reads: every required key, strings quoted, ``metadata: {}`` on rules and actions."""
    lines = [f"version: {quote(rule_set.version)}"]
    if not rule_set.rules:
        lines.append("rules: []")
    else:
        lines.append("rules:")
    for rule in rule_set.rules:
        lines += [
            f"  - id: {quote(rule.id)}",
            f"    name: {quote(rule.name)}",
            f"    description: {quote(rule.description)}",
            f"    severity: {quote(rule.severity)}",
            f"    enabled: {'true' if rule.enabled else 'false'}",
            "    conditions:" if rule.conditions else "    conditions: []",
        ]
        for cond in rule.conditions:
            lines += [
                f"      - field: {quote(cond.field)}",
                f"        operator: {quote(cond.operator)}",
                f"        value: {quote(cond.value)}",
                f"        case_sensitive: {'true' if cond.case_sensitive else 'false'}",
            ]
        lines += [
            "    action:",
            f"      action_type: {quote(rule.action.action_type)}",
            f"      message: {quote(rule.action.message)}",
        ]
        if rule.action.score is not None:
            lines.append(f"      score: {rule.action.score}")
        lines += _map_lines(rule.action.metadata, "      ")
        lines += _map_lines(rule.metadata, "    ")
    return "\n".join(lines) + "\n"


def rule_set_to_dict(rule_set: WafRuleSet) -> dict[str, object]:
    """Plain data (JSON-able), in the file's own shape."""
    def action(a: RuleAction) -> dict[str, object]:
        data: dict[str, object] = {"action_type": a.action_type, "message": a.message}
        if a.score is not None:
            data["score"] = a.score
        data["metadata"] = dict(a.metadata)
        return data

    return {"version": rule_set.version, "rules": [
        {"id": r.id, "name": r.name, "description": r.description, "severity": r.severity, "enabled": r.enabled,
         "conditions": [{"field": c.field, "operator": c.operator, "value": c.value,
                         "case_sensitive": c.case_sensitive} for c in r.conditions],
         "action": action(r.action), "metadata": dict(r.metadata)}
        for r in rule_set.rules
    ]}


def rule_set_from_dict(data: dict[str, object]) -> Imported[WafRuleSet]:
    """From plain data (e.g. a JSON API body) through the same import as a file (JSON is YAML 1.2)."""
    return load_waf_rules(json.dumps(data, ensure_ascii=False))


_RUST_F64 = re.compile(r"^[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)$", re.IGNORECASE)
_RUST_I64 = re.compile(r"^[+-]?[0-9]+$")


def parse_rust_f64(text: str) -> float | None:
    """``str::parse::<f64>`` (greater_than / less_than): no blanks, no underscores, inf/nan allowed."""
    if not _RUST_F64.match(text):
        return None
    return float(text)


def parse_rust_i64(text: str) -> int | None:
    """``str::parse::<i64>`` (SecRule @gt / @lt)."""
    if not _RUST_I64.match(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None
