"""The Gateway's ModSecurity subset: one-line ``SecRule`` files, parsed exactly as its tokenizer does.

FORMATS §a.4: a line counts only if, trimmed, it starts with ``SecRule`` and tokenises into at least four parts
(quotes toggle on every ``"``, no escapes; spaces and tabs split outside quotes). Everything else is skipped
silently by the Gateway — we say so. Import never fails (neither does the Gateway's loader): what the Gateway
would do differently from what the line says is a warning on import and an error in ``validation``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from waf_config.findings import Imported, Report

__all__ = [
    "BUILTIN_RULE_LINES", "ModSecFile", "SecRule", "dump_modsecurity", "load_modsecurity", "parse_secrule",
    "read_modsecurity", "render_secrule", "tokenize",
]

SUPPORTED_VARIABLES = ("REQUEST_URI", "REQUEST_FILENAME", "ARGS", "ARGS_NAMES", "REQUEST_HEADERS", "REQUEST_BODY",
                       "REQUEST_METHOD")
HEADER_VARIABLE = "REQUEST_HEADERS:"
SUPPORTED_OPERATORS = ("@rx", "@detectSQLi", "@detectXSS", "@contains", "@beginsWith", "@endsWith", "@eq", "@gt",
                       "@lt")
REGEX_OPERATORS = ("@rx", "@detectSQLi", "@detectXSS")
BLOCK_TOKENS = ("block", "deny", "drop")
ALLOW_TOKENS = ("allow", "pass")
BLOCKING_SEVERITIES = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR")

# The Gateway's 14 built-in rules, evaluated before any file (crates/gateway-waf/src/modsecurity_engine.rs). 100022
# carries an escaped quote, so it parses as id "unknown", log-only, as FORMATS §a.4 says.
BUILTIN_RULE_LINES = (
    """SecRule REQUEST_URI "@detectSQLi" "id:100001,msg:'SQL Injection Attack Detected',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule ARGS "@detectSQLi" "id:100002,msg:'SQL Injection in Parameters',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_BODY "@detectSQLi" "id:100003,msg:'SQL Injection in Request Body',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_URI "@detectXSS" "id:100011,msg:'Cross-site Scripting (XSS) Attack',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule ARGS "@detectXSS" "id:100012,msg:'XSS Attack in Parameters',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_BODY "@detectXSS" "id:100013,msg:'XSS Attack in Request Body',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_URI "@rx \\.\\./" "id:100021,msg:'Path Traversal Attack',severity:ERROR,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_URI "@rx \\.\\.\\\\\\"" "id:100022,msg:'Windows Path Traversal Attack',severity:ERROR,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_URI "@rx (?i)(;|&&|\\|\\|).*(ls|cat|wget|curl|nc|netcat|ping)" "id:100031,msg:'Command Injection Attempt',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule ARGS "@rx (?i)(;|&&|\\|\\|).*(ls|cat|wget|curl|nc|netcat|ping)" "id:100032,msg:'Command Injection in Parameters',severity:CRITICAL,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_URI "@rx (?i)(file://|php://|data://|expect://|zip://)" "id:100041,msg:'File Inclusion Attack',severity:ERROR,phase:2,block\"""",  # noqa: E501
    """SecRule REQUEST_HEADERS:User-Agent "@rx (?i)(sqlmap|nikto|nmap|masscan|zap|burp|w3af|acunetix|nessus)" "id:100051,msg:'Malicious User Agent',severity:WARNING,phase:1,block\"""",  # noqa: E501
    """SecRule REQUEST_METHOD "@rx ^(TRACE|DEBUG|TRACK|CONNECT)$" "id:100061,msg:'HTTP Method Not Allowed',severity:WARNING,phase:1,block\"""",  # noqa: E501
    """SecRule REQUEST_HEADERS:Content-Length "@gt 52428800" "id:100071,msg:'Request Body Too Large',severity:WARNING,phase:1,block\"""",  # noqa: E501
)

# The fixed pattern lists behind @detectSQLi / @detectXSS (not libinjection).
DETECT_SQLI = (
    r"(?i)(union\s+select|drop\s+table|delete\s+from|insert\s+into)",
    r"(?i)(exec\s*\(|sp_|xp_)",
    r"(?i)(\'\s*or\s+\d+\s*=\s*\d+|\'\s*or\s+\'\w+\'\s*=\s*\'\w+)",
    r"(?i)(--|\#|\/\*|\*\/)",
)
DETECT_XSS = (
    r"(?i)(<script|</script>|javascript:|vbscript:)",
    r"(?i)(onload=|onerror=|onclick=|onmouseover=)",
    r"(?i)(eval\s*\(|document\.cookie|document\.write)",
)


@dataclass(frozen=True, slots=True)
class SecRule:
    """One rule as the Gateway reads it. ``source`` is the exact line it came from (None when built in code)."""

    variables: tuple[str, ...]
    operator: str
    operator_arg: str
    actions: tuple[str, ...]
    id: str = "unknown"
    msg: str = "ModSecurity rule triggered"
    severity: str = "NOTICE"
    source: str | None = None
    line: int | None = None

    @property
    def outcome(self) -> str:
        """``block``, ``allow`` or ``log``: the first disruptive token, else the severity (FORMATS §a.4)."""
        for action in self.actions:
            if action in BLOCK_TOKENS:
                return "block"
            if action in ALLOW_TOKENS:
                return "allow"
            if action == "log":
                return "log"
        return "block" if self.severity in BLOCKING_SEVERITIES else "log"


@dataclass(frozen=True, slots=True)
class ModSecFile:
    """A ``.conf`` file: its exact text (the Gateway reads it line by line) and the rules it yields."""

    name: str
    text: str
    rules: tuple[SecRule, ...]


def tokenize(line: str) -> list[str]:
    """The Gateway's tokenizer: quotes toggle (no escapes), blanks split outside quotes, empty parts dropped."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    for ch in line:
        if ch == '"':
            if current:
                parts.append("".join(current))
                current = []
            in_quotes = not in_quotes
        elif ch in " \t" and not in_quotes:
            if current:
                parts.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current))
    return parts


def parse_secrule(line: str, line_number: int | None = None) -> SecRule | None:
    """The rule the Gateway makes of ``line``, or None when it skips the line."""
    text = line.strip()
    if not text or text.startswith("#") or not text.startswith("SecRule"):
        return None
    parts = tokenize(text)
    if len(parts) < 4:
        return None
    operator_part = parts[2]
    if operator_part.startswith("@"):
        operator, _, operator_arg = operator_part.partition(" ")
    else:
        operator, operator_arg = "@rx", operator_part
    actions = tuple(a.strip() for a in parts[3].split(","))
    rule_id, msg, severity = "unknown", "ModSecurity rule triggered", "NOTICE"
    for action in actions:
        if action.startswith("id:"):
            rule_id = action[3:]
        elif action.startswith("msg:"):
            msg = action[4:].strip("'").strip('"')
        elif action.startswith("severity:"):
            severity = action[9:]
    return SecRule(tuple(parts[1].split("|")), operator, operator_arg, actions, rule_id, msg, severity, line,
                   line_number)


def _msg_has_comma(text: str) -> bool:
    match = re.search(r"msg:'([^']*)'", text)
    return bool(match and "," in match.group(1)) or bool(re.search(r"msg:'[^']*,", text) and not match)


def _line_findings(raw: str, number: int, rule: SecRule | None, next_rule: SecRule | None, report: Report,
                   strict: bool, file_name: str) -> None:
    severe = report.error if strict else report.warning
    text = raw.strip()
    where = f"{file_name}:{number}"
    if not text or text.startswith("#"):
        return
    if rule is None:
        if text.startswith("SecRule"):
            severe("secrule-format", f"{where}: this SecRule does not tokenise into VARIABLES \"OPERATOR\" "
                   "\"ACTIONS\"; the Gateway skips the line", line=number)
        else:
            directive = text.split()[0]
            report.warning("ignored-directive", f"{where}: '{directive}' is not a SecRule; the Gateway ignores this "
                           "line", line=number)
        return
    rid = rule.id
    if text.endswith("\\"):
        severe("continuation", f"{where}: rule {rid} continues on the next line with '\\'; the Gateway reads one "
               "physical line only", rule_id=rid, field="line", line=number)
    if '\\"' in text:
        severe("escaped-quote", f"{where}: rule {rid} contains an escaped quote (\\\"); the Gateway's tokenizer does "
               "not honour escapes and parses this line differently", rule_id=rid, field="operator", line=number)
    if "chain" in rule.actions:
        follows = (f"; the next line (rule {next_rule.id}, {next_rule.outcome}) becomes a standalone rule"
                   if next_rule else "")
        severe("chain", f"{where}: rule {rid} uses 'chain', which the Gateway does not support: this line "
               f"{rule.outcome}s on its own{follows}", rule_id=rid, field="actions.chain", line=number)
    if _msg_has_comma(text):
        severe("msg-comma", f"{where}: rule {rid} has a comma inside msg; the Gateway splits actions on ',' and "
               "breaks the rule", rule_id=rid, field="actions.msg", line=number)
    if rid == "unknown":
        severe("secrule-id", f"{where}: the rule has no 'id:' action; the Gateway calls it 'unknown'",
               rule_id=rid, field="actions.id", line=number)
    for var in rule.variables:
        if var not in SUPPORTED_VARIABLES and not (var.startswith(HEADER_VARIABLE) and len(var) > len(HEADER_VARIABLE)):
            severe("secrule-variable", f"{where}: rule {rid}: variable '{var}' yields no value in the Gateway, so "
                   "it never matches", rule_id=rid, field="variables", line=number)
        elif var == "REQUEST_BODY":
            report.warning("secrule-body", f"{where}: rule {rid}: REQUEST_BODY is always empty in the Gateway today; "
                           "this variable never matches", rule_id=rid, field="variables", line=number)
    if rule.operator not in SUPPORTED_OPERATORS:
        severe("secrule-operator", f"{where}: rule {rid}: operator '{rule.operator}' is not supported by the "
               "Gateway and never matches", rule_id=rid, field="operator", line=number)
    if rule.outcome == "allow" and "chain" not in rule.actions:
        report.warning("secrule-allow", f"{where}: rule {rid}: allow/pass has no effect in the Gateway (evaluation "
                       "simply continues)", rule_id=rid, field="actions", line=number)


def read_modsecurity(text: str, name: str = "rules.conf", *, strict: bool) -> tuple[ModSecFile, Report]:
    report = Report()
    lines = text.splitlines()
    parsed = [parse_secrule(raw, i + 1) for i, raw in enumerate(lines)]
    for i, raw in enumerate(lines):
        following = next((r for r in parsed[i + 1:] if r is not None), None)
        _line_findings(raw, i + 1, parsed[i], following, report, strict, name)
    return ModSecFile(name, text, tuple(r for r in parsed if r is not None)), report


def load_modsecurity(text: str, name: str = "rules.conf") -> Imported[ModSecFile]:
    """Import a .conf file as the Gateway reads it; findings are warnings (the Gateway loads any file)."""
    file, report = read_modsecurity(text, name, strict=False)
    return Imported(file, report)


def render_secrule(rule: SecRule) -> str:
    """One line the Gateway parses back into ``rule``; the exact source line when the rule came from a file."""
    if rule.source is not None:
        return rule.source
    for part, what in ((" ".join(rule.variables), "variables"), (rule.operator_arg, "operator"),
                       (",".join(rule.actions), "actions")):
        if '"' in part or "\n" in part:
            raise ValueError(f"rule {rule.id}: {what} cannot contain a double quote or a newline in the Gateway's "
                             "SecRule subset")
    if any(" " in v or "\t" in v or not v for v in rule.variables):
        raise ValueError(f"rule {rule.id}: variables cannot be empty or contain blanks")
    operator = f"{rule.operator} {rule.operator_arg}" if rule.operator_arg else rule.operator
    return f'SecRule {"|".join(rule.variables)} "{operator}" "{",".join(rule.actions)}"'


def dump_modsecurity(file: ModSecFile) -> str:
    """The file's exact text: comments and skipped lines included, since the Gateway reads lines verbatim."""
    return file.text


def build_secrule(variables: list[str], operator: str, operator_arg: str, *, rule_id: str, msg: str,
                  severity: str = "CRITICAL", phase: int = 2, action: str = "block") -> SecRule:
    """A new one-line rule in the Gateway subset (no chain, no comma in msg, no quotes)."""
    if "," in msg or "'" in msg or '"' in msg:
        raise ValueError(f"rule {rule_id}: msg cannot contain ',', \"'\" or '\"' in the Gateway's SecRule subset")
    actions = (f"id:{rule_id}", f"msg:'{msg}'", f"severity:{severity}", f"phase:{phase}", action)
    rule = SecRule(tuple(variables), operator, operator_arg, actions, rule_id, msg, severity)
    line = render_secrule(rule)
    parsed = parse_secrule(line)
    if parsed is None or parsed.variables != rule.variables or parsed.operator_arg != operator_arg \
            or parsed.operator != operator:
        raise ValueError(f"rule {rule_id}: the Gateway would not parse this rule back as written: {line}")
    return parsed
