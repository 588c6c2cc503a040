"""What the detectors count: request classification (payload classes, sensitive paths, failed logins) and the
detector configuration read from the database (``Detector`` rows, ``AllowListEntry`` rows), cached briefly.

Detector kinds (``Detector.kind``), each counted per subject over a sliding window spanning every instance:

==================== ========= =================================================================================
kind                 subject   counts (fires at ``threshold`` within ``window_seconds``)
==================== ========= =================================================================================
login_bruteforce     IP        failed logins (``params``: ``paths`` regex, ``methods``, ``statuses``); the event
                               is ``login_bruteforce_split`` when no single instance reached the threshold
path_probing         IP        error answers (status >= 400) to known sensitive paths (``params.paths`` extends)
payload              IP        requests whose decoded URI holds the ``params.class`` payload: sqli, xss, traversal
distributed_probing  network   distinct IPs of one /24 or /64 sending probes (sensitive path or payload); also
                               needs ``params.min_requests`` probes in all
bad_user_agent       IP        requests from scanner user agents
waf_block_burst      IP        WAF blocks (the Gateway's ``Request blocked by WAF`` or ``waf_action=block``)
error_rate           route     5xx answers; also needs ``params.ratio`` of the route's requests
traffic_spike        route     requests; also ``params.factor`` times the mean of the ``params.baseline_windows``
                               windows before
==================== ========= =================================================================================
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from logpipeline.events import decoded_uri

PAYLOAD_CLASSES: dict[str, re.Pattern[str]] = {
    "sqli": re.compile(
        r"union(?:\s|/\*.*?\*/)+(?:all\s+)?select|\bselect\b.{1,100}\bfrom\b|'\s*or\s+'?\w+'?\s*=\s*'?\w|"
        r"\bor\s+1\s*=\s*1|'\s*(?:--|#|/\*)|;\s*(?:drop|delete|insert|update|shutdown)\s|\bsleep\s*\(\s*\d|"
        r"benchmark\s*\(|information_schema|waitfor\s+delay|extractvalue\s*\(|updatexml\s*\(|pg_sleep\s*\("
    ),
    "xss": re.compile(
        r"<\s*script|javascript\s*:|\bon(?:error|load|mouseover|focus|click|toggle)\s*=|<\s*(?:img|svg|iframe|body|"
        r"details|object|embed)\b[^>]*(?:on\w+|src)\s*=|alert\s*\(|document\.cookie|<\s*/\s*script|prompt\s*\("
    ),
    "traversal": re.compile(
        r"\.\./|\.\.\\|/etc/(?:passwd|shadow|hosts)|c:\\windows|/proc/self/|win\.ini|boot\.ini|\bfile://"
    ),
}
_PAYLOAD_PREFILTER = re.compile(r"[<'\\;(]|\.\.|/etc/|select|union|script|javascript|file:|win\.ini|delay")

SENSITIVE_PATHS = re.compile(
    r"/\.env\b|/\.git(?:/|$)|/\.svn/|/\.hg/|/\.ds_store|/wp-login\.php|/wp-admin|/wp-config|/xmlrpc\.php|"
    r"/phpmyadmin|/pma/|/myadmin|/adminer|/admin\.php|/config\.php|/configuration\.php|/backup(?:\.|/|$)|"
    r"\.(?:sql|bak|old|swp|tar\.gz|zip)$|/\.aws/|/\.ssh/|/id_rsa|/server-status|/actuator|/cgi-bin/|"
    r"/vendor/phpunit|/web\.config|/\.htaccess|/\.htpasswd|/shell\.php|/boaform|/etc/passwd|/\.well-known/"
    r"security\.txt~|/console/?$|/solr/|/telescope|/_profiler|/debug/pprof|/\.vscode/|/\.idea/",
    re.IGNORECASE,
)
DEFAULT_LOGIN_PATHS = r"/(?:login|signin|sign-in|auth|session|sessions|oauth/token|wp-login\.php|user/login)(?:/|$)"


@lru_cache(maxsize=65536)
def payload_class(uri: str) -> str | None:
    """``sqli``, ``xss``, ``traversal`` or None for a request target (decoded twice, case-folded)."""
    text = decoded_uri(uri)
    if not _PAYLOAD_PREFILTER.search(text):
        return None
    for name, pattern in PAYLOAD_CLASSES.items():
        if pattern.search(text):
            return name
    return None


@lru_cache(maxsize=65536)
def is_sensitive_path(path: str) -> bool:
    return SENSITIVE_PATHS.search(path) is not None


@dataclass(frozen=True, eq=False)  # hashed by identity: the engine keys counters by it
class DetectorConfig:
    name: str
    kind: str
    threshold: int
    window_seconds: int
    severity: str = "medium"
    params: dict[str, Any] = field(default_factory=dict)
    response: str = "notify"
    simulate: bool = True
    block_ttl_seconds: int = 900
    max_block_ttl_seconds: int = 86400

    @property
    def bucket_seconds(self) -> int:
        """Windows slide in tenths: a window is 10 buckets (or 1-second buckets for windows under 10 s)."""
        return max(1, self.window_seconds // 10)

    @property
    def window_buckets(self) -> int:
        return max(1, math.ceil(self.window_seconds / self.bucket_seconds))


@dataclass
class Config:
    detectors: list[DetectorConfig]
    allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    login_paths: re.Pattern[str] = field(default_factory=lambda: re.compile(DEFAULT_LOGIN_PATHS, re.I))
    _allowed: dict[str, bool] = field(default_factory=dict)

    def by_kind(self, kind: str) -> list[DetectorConfig]:
        return [d for d in self.detectors if d.kind == kind]

    def allowed(self, ip: str | None) -> bool:
        """True for an allow-listed address: never counted, never blocked."""
        if ip is None or not self.allow:
            return False
        known = self._allowed.get(ip)
        if known is None:
            address = ipaddress.ip_address(ip)
            known = any(address in net for net in self.allow)
            if len(self._allowed) > 100000:
                self._allowed.clear()
            self._allowed[ip] = known
        return known

    def overlaps_allow_list(self, pattern: str) -> bool:
        """True when a block of ``pattern`` (an IP or a CIDR) would touch any allow-listed address."""
        try:
            net = ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
        return any(net.version == a.version and net.overlaps(a) for a in self.allow)


# The defaults installed by migration 0002 (and by ``seed_default_detectors`` in tests): start in simulation.
DEFAULT_DETECTORS: list[dict[str, Any]] = [
    {"name": "login-bruteforce", "kind": "login_bruteforce", "threshold": 10, "window_seconds": 300,
     "severity": "high", "response": "block",
     "params": {"paths": DEFAULT_LOGIN_PATHS, "methods": ["POST"], "statuses": [401, 403]},
     "description": "failed logins from one IP across every instance (split attacks included)"},
    {"name": "path-probing", "kind": "path_probing", "threshold": 5, "window_seconds": 120, "severity": "medium",
     "response": "block", "params": {}, "description": "error answers to known sensitive files and admin paths"},
    {"name": "sqli-probing", "kind": "payload", "threshold": 3, "window_seconds": 600, "severity": "high",
     "response": "block", "params": {"class": "sqli"}, "description": "SQL injection payloads in the URI"},
    {"name": "xss-probing", "kind": "payload", "threshold": 3, "window_seconds": 600, "severity": "high",
     "response": "block", "params": {"class": "xss"}, "description": "script injection payloads in the URI"},
    {"name": "traversal-probing", "kind": "payload", "threshold": 3, "window_seconds": 600, "severity": "high",
     "response": "block", "params": {"class": "traversal"}, "description": "path traversal payloads in the URI"},
    {"name": "distributed-probing", "kind": "distributed_probing", "threshold": 6, "window_seconds": 300,
     "severity": "high", "response": "block", "params": {"min_requests": 10},
     "description": "many addresses of one /24 or /64 probing together"},
    {"name": "bad-user-agent", "kind": "bad_user_agent", "threshold": 3, "window_seconds": 300,
     "severity": "medium", "response": "count", "params": {}, "description": "known scanner user agents"},
    {"name": "waf-block-burst", "kind": "waf_block_burst", "threshold": 10, "window_seconds": 60,
     "severity": "high", "response": "block", "params": {}, "description": "WAF blocks for one IP in a burst"},
    {"name": "error-rate-spike", "kind": "error_rate", "threshold": 20, "window_seconds": 60, "severity": "medium",
     "response": "notify", "params": {"ratio": 0.5}, "description": "5xx answers on one route"},
    {"name": "traffic-spike", "kind": "traffic_spike", "threshold": 600, "window_seconds": 60, "severity": "medium",
     "response": "notify", "params": {"factor": 5, "baseline_windows": 5},
     "description": "requests on one route well above its recent mean"},
]

CONFIG_CACHE_SECONDS = 10.0
_cached: tuple[float, Config] | None = None


def load_config(*, fresh: bool = False) -> Config:
    """Enabled detectors and the allow list, from the database at most every ``CONFIG_CACHE_SECONDS``."""
    global _cached
    now = time.monotonic()
    if not fresh and _cached is not None and now - _cached[0] < CONFIG_CACHE_SECONDS:
        return _cached[1]
    from logpipeline.models import AllowListEntry, Detector

    detectors = [
        DetectorConfig(name=d.name, kind=d.kind, threshold=max(1, d.threshold), window_seconds=max(1, d.window_seconds),
                       severity=d.severity, params=dict(d.params or {}), response=d.response, simulate=d.simulate,
                       block_ttl_seconds=d.block_ttl_seconds, max_block_ttl_seconds=d.max_block_ttl_seconds)
        for d in Detector.objects.filter(enabled=True).order_by("name")
    ]
    allow = []
    for cidr in AllowListEntry.objects.values_list("cidr", flat=True):
        try:
            allow.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            continue  # admin validates; an old bad row never stops intake
    config = Config(detectors=detectors, allow=allow)
    logins = [d for d in detectors if d.kind == "login_bruteforce"]
    if logins and logins[0].params.get("paths"):
        config.login_paths = re.compile(str(logins[0].params["paths"]), re.IGNORECASE)
    _cached = (now, config)
    return config


def invalidate_config() -> None:
    global _cached
    _cached = None


def seed_default_detectors(model: Any = None) -> int:
    """Create the default detectors that are missing (by name); never changes an existing row."""
    if model is None:
        from logpipeline.models import Detector as model
    created = 0
    for spec in DEFAULT_DETECTORS:
        _, was_created = model.objects.get_or_create(name=spec["name"], defaults=spec)
        created += int(was_created)
    invalidate_config()
    return created
