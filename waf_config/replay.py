"""Replay: the Gateway's request pipeline (FORMATS §a.3) over stored requests, and the diff of two versions.

The order is the Gateway's, exactly: WAF switch, size limit, IP lists, rate limiter, blocked headers, blocked
user agents, the hard-coded URL substrings, the ModSecurity subset, then the YAML rules in file order. The first
block or rate limit wins; a YAML ``log`` rule and a ModSecurity log result are recorded and evaluation goes on;
``rate_limit`` answers 429 on every match. The rate limiter is a per-IP fixed window driven by the requests'
timestamps, fresh for every replay run.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from waf_config.compiler import CompiledPolicy
from waf_config.gateway_config import RateLimitSettings, WafSettings
from waf_config.traffic import Request

# Matched on the lowercased URI, as in the Gateway: so the two mixed-case %3C patterns can never match.
URL_PATTERNS = ("../", "..\\", "<script", "</script>", "union select", "drop table", "delete from", "javascript:",
                "vbscript:", "%3Cscript", "%3C%2Fscript%3E", "eval(", "exec(")
STATUS = {"allow": 200, "block": 403, "rate_limit": 429}


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # "allow", "block" or "rate_limit"
    stage: str  # "allowed", "waf_disabled", "size_limit", "ip_filter", "rate_limiter", "blocked_header",
    #            "blocked_user_agent", "url_pattern", "modsecurity", "rule"
    reason: str = ""
    rule_id: str | None = None
    logged: tuple[str, ...] = ()  # "rule:<id>" for YAML log rules, "modsecurity:<id>" for a ModSecurity log

    @property
    def status(self) -> int:
        return STATUS[self.action]

    @property
    def key(self) -> str:
        """What decided: "rule:<id>", "modsecurity:<id>", or the stage."""
        return f"{self.stage}:{self.rule_id}" if self.rule_id is not None else self.stage

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "logged": list(self.logged), "status": self.status}


ALLOW = Verdict("allow", "allowed")


class RateLimiter:
    """The Gateway's fixed-window counter keyed by client IP (FORMATS §a.3 step 3)."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self.entries: dict[str, list[float]] = {}  # ip -> [count, window_start, last_request]

    def allow(self, ip: str, now: float) -> bool:
        s = self.settings
        entry = self.entries.get(ip)
        if entry is None:
            entry = self.entries[ip] = [0, now, now]
        if now - entry[1] >= s.window_secs:
            entry[0] = 0
            entry[1] = now
        if entry[0] >= s.requests_per_minute and (entry[0] >= s.burst_limit or now - entry[2] < 1.0):
            return False  # a limited request does not count
        entry[0] += 1
        entry[2] = now
        return True


class Evaluator:
    """One Gateway's verdicts for a compiled policy; keeps rate-limiter state across ``evaluate`` calls."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        settings: WafSettings = compiled.policy.settings
        self.settings = settings
        self.whitelist = settings.ip_networks(settings.ip_whitelist)
        self.blacklist = settings.ip_networks(settings.ip_blacklist)
        self.rate_limiter = RateLimiter(settings.rate_limiting) if settings.rate_limiting.enabled else None
        self._ip_blocked: dict[str, bool] = {}

    def _blocked_ip(self, ip: str) -> bool:
        blocked = self._ip_blocked.get(ip)
        if blocked is None:
            address = ipaddress.ip_address(ip)
            blocked = (bool(self.whitelist) and not any(address in n for n in self.whitelist)) \
                or any(address in n for n in self.blacklist)
            self._ip_blocked[ip] = blocked
        return blocked

    def evaluate(self, request: Request) -> Verdict:
        s = self.settings
        if not s.enabled:
            return Verdict("allow", "waf_disabled")
        if request.content_length is not None and request.content_length > s.max_request_size:
            return Verdict("block", "size_limit", "Request size exceeds limit")
        if (self.whitelist or self.blacklist) and self._blocked_ip(request.client_ip):
            return Verdict("block", "ip_filter", f"IP {request.client_ip} is blocked")
        if self.rate_limiter is not None and not self.rate_limiter.allow(request.client_ip, request.timestamp):
            return Verdict("rate_limit", "rate_limiter", "Rate limit exceeded")
        for name in s.blocked_headers:
            if name in request.headers:
                return Verdict("block", "blocked_header", f"Blocked header: {name}")
        if request.user_agent is not None:
            for agent in s.blocked_user_agents:
                if agent in request.user_agent:
                    return Verdict("block", "blocked_user_agent", f"Blocked user agent: {agent}")
        uri = request.uri.lower()
        for pattern in URL_PATTERNS:
            if pattern in uri:
                return Verdict("block", "url_pattern", "Malicious URL pattern detected")
        logged: list[str] = []
        if self.compiled.modsecurity is not None:
            hit = self.compiled.modsecurity.evaluate(request)
            if hit is not None:
                if hit.outcome == "block":
                    return Verdict("block", "modsecurity", hit.message, hit.rule_id)
                logged.append(f"modsecurity:{hit.rule_id}")
        rule_hit, rule_logs = self.compiled.rules.evaluate(request)
        logged += [f"rule:{rid}" for rid in rule_logs]
        if rule_hit is not None:
            return Verdict(rule_hit.action_type, "rule", rule_hit.message, rule_hit.rule_id, tuple(logged))
        return Verdict("allow", "allowed", logged=tuple(logged)) if logged else ALLOW


# ------------------------------------------------------------------------------------------------ diff


@dataclass(frozen=True, slots=True)
class VerdictChange:
    index: int
    request: dict[str, Any]
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass(slots=True)
class ReplayReport:
    """Old vs new over the same requests; ``to_dict`` is JSON-able (ReplayRun.report)."""

    old_hash: str | None
    new_hash: str
    requests: int = 0
    changed: int = 0
    newly_blocked: int = 0  # allowed before, blocked or rate limited now
    newly_allowed: int = 0  # blocked or rate limited before, allowed now
    decided_elsewhere: int = 0  # still stopped, by another rule or stage
    decisions_old: Counter[str] = field(default_factory=Counter)  # Verdict.key -> requests stopped
    decisions_new: Counter[str] = field(default_factory=Counter)
    logged_old: Counter[str] = field(default_factory=Counter)
    logged_new: Counter[str] = field(default_factory=Counter)
    benign: int = 0
    benign_stopped_old: int = 0
    benign_stopped_new: int = 0
    attacks: int = 0
    attacks_stopped_old: int = 0
    attacks_stopped_new: int = 0
    samples: dict[str, list[VerdictChange]] = field(default_factory=dict)  # by transition, e.g. "allow->block"

    @property
    def false_positive_rate_new(self) -> float | None:
        return self.benign_stopped_new / self.benign if self.benign else None

    @property
    def false_positive_rate_old(self) -> float | None:
        return self.benign_stopped_old / self.benign if self.benign else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_hash": self.old_hash, "new_hash": self.new_hash, "requests": self.requests,
            "changed": self.changed, "newly_blocked": self.newly_blocked, "newly_allowed": self.newly_allowed,
            "decided_elsewhere": self.decided_elsewhere,
            "decisions_old": dict(self.decisions_old), "decisions_new": dict(self.decisions_new),
            "logged_old": dict(self.logged_old), "logged_new": dict(self.logged_new),
            "benign": self.benign, "benign_stopped_old": self.benign_stopped_old,
            "benign_stopped_new": self.benign_stopped_new,
            "false_positive_rate_old": self.false_positive_rate_old,
            "false_positive_rate_new": self.false_positive_rate_new,
            "attacks": self.attacks, "attacks_stopped_old": self.attacks_stopped_old,
            "attacks_stopped_new": self.attacks_stopped_new,
            "samples": {k: [asdict(c) for c in v] for k, v in self.samples.items()},
        }


def replay(new: CompiledPolicy, requests: Iterable[Request], old: CompiledPolicy | None = None, *,
           samples_per_change: int = 20) -> ReplayReport:
    """Evaluate every request under ``old`` (None: everything allowed, a first version) and ``new``."""
    old_eval = Evaluator(old) if old is not None else None
    new_eval = Evaluator(new)
    report = ReplayReport(old.content_hash if old is not None else None, new.content_hash)
    for index, request in enumerate(requests):
        before = old_eval.evaluate(request) if old_eval is not None else ALLOW
        after = new_eval.evaluate(request)
        report.requests += 1
        stopped_before, stopped_after = before.action != "allow", after.action != "allow"
        if stopped_before:
            report.decisions_old[before.key] += 1
        if stopped_after:
            report.decisions_new[after.key] += 1
        report.logged_old.update(before.logged)
        report.logged_new.update(after.logged)
        if request.label == "benign":
            report.benign += 1
            report.benign_stopped_old += stopped_before
            report.benign_stopped_new += stopped_after
        elif request.label == "attack":
            report.attacks += 1
            report.attacks_stopped_old += stopped_before
            report.attacks_stopped_new += stopped_after
        if (before.action, before.key) == (after.action, after.key):
            continue
        report.changed += 1
        if not stopped_before and stopped_after:
            report.newly_blocked += 1
        elif stopped_before and not stopped_after:
            report.newly_allowed += 1
        elif stopped_before and stopped_after:
            report.decided_elsewhere += 1
        transition = f"{before.action}->{after.action}"
        bucket = report.samples.setdefault(transition, [])
        if len(bucket) < samples_per_change:
            bucket.append(VerdictChange(index, request.to_dict(), before.to_dict(), after.to_dict()))
    return report
