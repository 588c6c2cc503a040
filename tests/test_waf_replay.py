"""Replay verdicts against FORMATS §a.3 and §a.4: each expected verdict below is read from FORMATS, by hand."""

from __future__ import annotations

from pathlib import Path

from waf_config.compiler import Policy, RuleMatcher, compile_policy
from waf_config.formats import RuleAction, RuleCondition, WafRule, WafRuleSet, load_waf_rules
from waf_config.gateway_config import RateLimitSettings, WafSettings
from waf_config.modsecurity import load_modsecurity
from waf_config.replay import Evaluator, replay
from waf_config.traffic import Request

EXAMPLES = Path(__file__).parent / "test_waf_examples"
NO_RATE_LIMIT = RateLimitSettings(enabled=False)


def rule(rule_id: str, *conditions: RuleCondition, action: str = "block", enabled: bool = True) -> WafRule:
    return WafRule(rule_id, rule_id, "", "high", enabled, conditions, RuleAction(action, f"{rule_id} hit"))


def cond(field: str, operator: str, value: str, case_sensitive: bool = True) -> RuleCondition:
    return RuleCondition(field, operator, value, case_sensitive)


def evaluator(*rules: WafRule, settings: WafSettings | None = None, conf: str | None = None) -> Evaluator:
    files = (load_modsecurity(conf, "custom.conf").value,) if conf is not None else ()
    settings = settings or WafSettings(rate_limiting=NO_RATE_LIMIT, modsecurity_enabled=conf is not None)
    return Evaluator(compile_policy(Policy(WafRuleSet("1.0", rules), files, settings), validate=False))


def test_step0_waf_disabled_allows_everything() -> None:
    ev = evaluator(rule("all", cond("uri", "contains", "/")), settings=WafSettings(enabled=False))
    assert ev.evaluate(Request(uri="/../etc/passwd")).stage == "waf_disabled"


def test_step1_size_limit_comes_first() -> None:
    ev = evaluator(settings=WafSettings(max_request_size=100, ip_blacklist=("10.0.0.1",), rate_limiting=NO_RATE_LIMIT))
    verdict = ev.evaluate(Request(client_ip="10.0.0.1", content_length=101))
    assert (verdict.action, verdict.reason, verdict.status) == ("block", "Request size exceeds limit", 403)
    assert ev.evaluate(Request(client_ip="10.0.0.2", content_length=100)).action == "allow"


def test_step2_ip_lists_with_cidrs_and_dropped_entries() -> None:
    ev = evaluator(settings=WafSettings(ip_blacklist=("10.0.0.0/8", "not-an-ip"), rate_limiting=NO_RATE_LIMIT))
    assert ev.evaluate(Request(client_ip="10.1.2.3")).reason == "IP 10.1.2.3 is blocked"
    assert ev.evaluate(Request(client_ip="192.0.2.1")).action == "allow"
    allow_only = evaluator(settings=WafSettings(ip_whitelist=("192.0.2.0/24",), rate_limiting=NO_RATE_LIMIT))
    assert allow_only.evaluate(Request(client_ip="198.51.100.7")).stage == "ip_filter"
    assert allow_only.evaluate(Request(client_ip="192.0.2.9")).action == "allow"


def test_step3_rate_limiter_fixed_window() -> None:
    limits = RateLimitSettings(enabled=True, requests_per_minute=3, burst_limit=5, window_secs=60)
    ev = evaluator(settings=WafSettings(rate_limiting=limits))
    # count reaches 3; the 4th is limited only if count >= burst (5) or the previous request was < 1 s ago
    times = [0.0, 10.0, 20.0, 20.5, 22.0, 24.0, 26.0, 28.0, 61.0]
    actions = [ev.evaluate(Request(client_ip="203.0.113.5", timestamp=t)).action for t in times]
    assert actions == ["allow", "allow", "allow", "rate_limit", "allow", "allow", "rate_limit", "rate_limit", "allow"]
    assert ev.evaluate(Request(client_ip="203.0.113.6", timestamp=28.0)).action == "allow"  # keyed by IP
    assert ev.evaluate(Request(client_ip="203.0.113.5", timestamp=62.0)).status == 200


def test_steps4_to_6_headers_agents_url_patterns() -> None:
    ev = evaluator(settings=WafSettings(blocked_headers=("X-Evil",), blocked_user_agents=("BadBot",),
                                        rate_limiting=NO_RATE_LIMIT))
    assert ev.evaluate(Request(headers={"X-Evil": ""})).reason == "Blocked header: X-Evil"
    assert ev.evaluate(Request(headers={"x-evil": "1"})).action == "allow"  # exact key
    assert ev.evaluate(Request(user_agent="a BadBot/2")).reason == "Blocked user agent: BadBot"
    assert ev.evaluate(Request(user_agent="badbot")).action == "allow"  # case-sensitive substring
    for uri in ("/a/../b", "/?q=UNION SELECT", "/x?<SCRIPT>", "/?f=eval(1)", "/..\\x"):
        assert ev.evaluate(Request(uri=uri)).reason == "Malicious URL pattern detected", uri
    # the mixed-case %3C patterns are compared with a lowercased URI, so they never match
    assert ev.evaluate(Request(uri="/?q=%3Cscript%3E")).action == "allow"


def test_order_size_before_ip_before_rules() -> None:
    ev = evaluator(rule("r", cond("uri", "contains", "x")),
                   settings=WafSettings(ip_blacklist=("192.0.2.1",), rate_limiting=NO_RATE_LIMIT))
    assert ev.evaluate(Request(uri="/x", client_ip="192.0.2.1")).stage == "ip_filter"
    assert ev.evaluate(Request(uri="/x/../", client_ip="192.0.2.2")).stage == "url_pattern"
    assert ev.evaluate(Request(uri="/x", client_ip="192.0.2.2")).key == "rule:r"


def test_yaml_rules_first_block_wins_log_continues_rate_limit_429() -> None:
    ev = evaluator(
        rule("seen", cond("uri", "starts_with", "/api/"), action="log"),
        rule("limited", cond("uri", "starts_with", "/api/slow")),
        rule("api", cond("uri", "starts_with", "/api/"), action="rate_limit"),
        rule("never", cond("uri", "starts_with", "/api/")),
    )
    v = ev.evaluate(Request(uri="/api/slow"))
    assert (v.action, v.rule_id, v.logged) == ("block", "limited", ("rule:seen",))
    v = ev.evaluate(Request(uri="/api/fast"))
    assert (v.status, v.rule_id, v.reason) == (429, "api", "api hit")
    assert ev.evaluate(Request(uri="/home")).action == "allow"


def test_conditions_and_operators() -> None:
    ev = evaluator(
        rule("and", cond("method", "equals", "POST"), cond("uri", "ends_with", ".php")),
        rule("ci", cond("header.X-Mode", "equals", "DEBUG", case_sensitive=False)),
        rule("regex_ignores_case_flag", cond("user_agent", "regex", "curl", case_sensitive=False)),
        rule("big", cond("content_length", "greater_than", "1000")),
        rule("query", cond("query.debug", "equals", "1")),
        rule("disabled", cond("uri", "contains", "/"), enabled=False),
        rule("empty_header", cond("header.X-Token", "equals", "")),
    )
    headers = {"X-Token": "t"}
    assert ev.evaluate(Request(method="POST", uri="/a.php", headers=headers)).rule_id == "and"
    assert ev.evaluate(Request(method="GET", uri="/a.php", headers=headers)).action == "allow"
    assert ev.evaluate(Request(headers={"X-Mode": "debug", **headers})).rule_id == "ci"
    assert ev.evaluate(Request(headers={"x-mode": "debug", **headers})).action == "allow"  # exact header key
    assert ev.evaluate(Request(user_agent="curl/8", headers=headers)).rule_id == "regex_ignores_case_flag"
    assert ev.evaluate(Request(user_agent="CURL/8", headers=headers)).action == "allow"  # case_sensitive ignored
    assert ev.evaluate(Request(content_length=1001, headers=headers)).rule_id == "big"
    assert ev.evaluate(Request(uri="/x?debug=1", headers=headers)).rule_id == "query"
    # an absent header reads as "" (FORMATS §a.2), so equals "" matches it
    assert ev.evaluate(Request(uri="/")).rule_id == "empty_header"


def test_rules_that_error_are_skipped() -> None:
    ev = evaluator(
        rule("nan", cond("uri", "greater_than", "5")),  # "/x" is not a number: error, skipped
        rule("unknown_op", cond("uri", "startswith", "/")),
        rule("fallback", cond("uri", "contains", "/x"), action="log"),
    )
    assert ev.evaluate(Request(uri="/x")).logged == ("rule:fallback",)


def test_modsecurity_semantics() -> None:
    conf = "\n".join([
        'SecRule REQUEST_URI "@beginsWith /health" "id:1,msg:\'health\',severity:NOTICE,allow"',
        'SecRule REQUEST_URI "@beginsWith /health" "id:2,msg:\'probe\',severity:CRITICAL"',
        'SecRule REQUEST_URI "@beginsWith /api/" "id:3,msg:\'api\',severity:NOTICE"',
        'SecRule REQUEST_URI "@beginsWith /api/admin" "id:4,msg:\'admin\',block"',
        'SecRule REQUEST_HEADERS:X-Key "@eq secret" "id:5,msg:\'key\',deny"',
        'SecRule ARGS "@rx (?i)drop" "id:6,msg:\'args\',drop"',
    ])
    ev = evaluator(rule("yaml", cond("uri", "contains", "api")), conf=conf)
    # allow continues, and the next rule (severity CRITICAL, no disruptive token) blocks
    v = ev.evaluate(Request(uri="/health"))
    assert (v.stage, v.rule_id, v.reason) == ("modsecurity", "2", "probe (Rule ID: 2)")
    # a log result stops ModSecurity (rule 4 never runs) but the YAML rules still run
    v = ev.evaluate(Request(uri="/api/admin"))
    assert (v.key, v.logged) == ("rule:yaml", ("modsecurity:3",))
    assert ev.evaluate(Request(uri="/x", headers={"X-Key": "secret"})).rule_id == "5"
    assert ev.evaluate(Request(uri="/x?a=DROP")).rule_id == "6"
    # built-in rules run first: 100061 blocks TRACE, 100051 scanners
    assert ev.evaluate(Request(method="TRACE", uri="/x")).rule_id == "100061"
    assert ev.evaluate(Request(uri="/x", headers={"User-Agent": "sqlmap/1.7"})).rule_id == "100051"


def test_shipped_chain_blocks_every_get_as_formats_says() -> None:
    conf = (EXAMPLES / "300-application-specific.conf").read_text()
    ev = evaluator(conf=conf)
    v = ev.evaluate(Request(method="GET", uri="/products"))
    assert (v.action, v.stage, v.rule_id) == ("block", "modsecurity", "unknown")
    # /api/… hits log rule 300001 first, which stops ModSecurity: allowed
    assert ev.evaluate(Request(method="GET", uri="/api/items")).action == "allow"
    # the chain's first line, severity CRITICAL with no disruptive action, blocks /api/payment on its own…
    # …but 300001 (/api/) logs first and stops the loop
    assert ev.evaluate(Request(method="POST", uri="/api/payment")).logged == ("modsecurity:300001",)


def test_shipped_rules_rate_limit_every_api_request() -> None:
    rules = load_waf_rules((EXAMPLES / "waf-rules.yaml").read_text()).value
    ev = Evaluator(compile_policy(Policy(rules, (), WafSettings(rate_limiting=NO_RATE_LIMIT))))
    assert ev.evaluate(Request(uri="/api/users")).status == 429
    assert ev.evaluate(Request(uri="/index.html")).status == 200
    assert ev.evaluate(Request(method="TRACE", uri="/")).status == 200  # method_not_allowed is disabled


def test_prefilter_gives_the_same_verdicts_as_plain_evaluation() -> None:
    rules = [rule(f"r{i}", cond("uri", op, val, cs)) for i, (op, val, cs) in enumerate([
        ("contains", "ADMIN", False), ("starts_with", "/Api", True), ("ends_with", ".PHP", False),
        ("equals", "/", True), ("regex", r"(?i)\bselect\b", True), ("regex", "(?x) a b # comment", True),
        ("contains", "İ", False), ("regex", "^$", True),
    ])]
    rules.append(rule("ua", cond("user_agent", "regex", "^$"), cond("header.Accept", "contains", "")))
    rules += [rule("gt10", cond("content_length", "greater_than", "10")),
              rule("lt5", cond("content_length", "less_than", "5"), cond("uri", "contains", "i")),
              rule("gt_hdr", cond("header.X-N", "greater_than", "2.5")),
              rule("gt10b", cond("content_length", "greater_than", "10"), cond("uri", "starts_with", "/o"))]
    fast = RuleMatcher(WafRuleSet("1.0", tuple(rules)))
    plain = RuleMatcher(WafRuleSet("1.0", tuple(rules)))
    plain.probes.clear()  # every live rule evaluated in order, no prefilter
    plain.numeric.clear()
    assert len(fast.probes) >= 3
    for uri in ("/admin", "/x/AdMiN", "/Api/v1", "/api/v1", "/index.php", "/INDEX.Php", "/", "/?q=SELECT 1", "/ab",
                "/i̇stanbul", "/İ", "/other"):
        for ua, length, n in ((None, None, "3"), ("curl", 11, "x"), (None, 10, "2.5"), ("x", 4, "inf"),
                              (None, 0, "NaN"), (None, 12, " 3")):
            request = Request(uri=uri, user_agent=ua, content_length=length, headers={"X-N": n})
            assert fast.evaluate(request) == plain.evaluate(request), (uri, ua, length, n)


def test_replay_diff_report() -> None:
    old = compile_policy(Policy(WafRuleSet("1.0", (rule("sqli", cond("uri", "regex", "(?i)union\\s+all")),)),
                                settings=WafSettings(rate_limiting=NO_RATE_LIMIT)))
    new = compile_policy(Policy(WafRuleSet("1.0", (
        rule("admin", cond("uri", "starts_with", "/admin")),
        rule("sqli", cond("uri", "regex", "(?i)union\\s+all")),
    )), settings=WafSettings(rate_limiting=NO_RATE_LIMIT)))
    requests = [
        Request(uri="/admin/login", label="benign"),
        Request(uri="/admin/x?id=1 UNION ALL 2", label="attack"),
        Request(uri="/home", label="benign"),
        Request(uri="/?id=1 union all 2", label="attack"),
    ]
    report = replay(new, requests, old)
    assert (report.requests, report.changed, report.newly_blocked, report.newly_allowed,
            report.decided_elsewhere) == (4, 2, 1, 0, 1)
    assert report.decisions_new == {"rule:admin": 2, "rule:sqli": 1}
    assert report.false_positive_rate_old == 0.0 and report.false_positive_rate_new == 0.5
    assert report.attacks_stopped_new == 2
    data = report.to_dict()
    import json

    json.dumps(data)
    sample = data["samples"]["allow->block"][0]
    assert sample["request"]["uri"] == "/admin/login" and sample["new"]["rule_id"] == "admin"
    assert compile_policy(new.policy) is new  # cached by content hash
    assert new.files["waf-rules.yaml"].startswith(b'version: "1.0"\nrules:\n')
