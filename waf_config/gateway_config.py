"""The Gateway's ``gateway.yaml`` (FORMATS §b): schema, import (normalising), validation and export.

Every non-``Option`` key at every level is required, durations are ``{secs, nanos}`` (or ``[secs, nanos]``), and
strings such as ``"30s"`` are rejected. The schema below is FORMATS §b.2 as data: each key's type and the code
default the import fills in (with a warning) when a key is missing. ``?`` marks an ``Option`` key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

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
    to_float,
    to_int,
)

__all__ = ["GatewayConfig", "RateLimitSettings", "WafSettings", "dump_gateway_config", "load_gateway_config",
           "read_gateway_config"]

_NO_DEFAULT = object()
D = "dur"
UINT = {"u16": 2**16 - 1, "u32": 2**32 - 1, "u64": 2**64 - 1, "usize": 2**64 - 1}
_STR_MAP = {"map": "str"}


_TMP_CERTS = "/tmp/gateway-certificates"  # noqa: S108  (the Gateway's code default, written into configs)


def _dur(secs: int) -> dict[str, int]:
    return {"secs": secs, "nanos": 0}


# key -> (type, default). Types: "str" "bool" "i32" "u16" "u32" "u64" "usize" "f64" "dur" "any",
# ["T"] list, {"map": T} map of string to T, or a nested dict (a struct).
SCHEMA: dict[str, Any] = {
    "server": {
        "bind_address": ("str", "0.0.0.0:8080"), "worker_threads": ("usize", 4), "debug": ("bool", False),
        "max_connections": ("usize", 10000), "connection_timeout": (D, _dur(30)),
        "keep_alive_timeout": (D, _dur(60)), "graceful_shutdown_timeout": (D, _dur(30)),
        "tls?": ({"cert_path": ("str", _NO_DEFAULT), "key_path": ("str", _NO_DEFAULT), "ca_path?": ("str", None),
                  "require_client_cert": ("bool", False)}, None),
    },
    "ssl": {
        "enabled": ("bool", False),
        "auto_ssl": ({"enabled": ("bool", False), "domains": (["str"], []), "email": ("str", ""),
                      "staging": ("bool", True), "renewal_threshold_days": ("u32", 30),
                      "challenge_type": ("str", "http-01"), "challenge_port": ("u16", 80)}, _NO_DEFAULT),
        "certificate": ({"storage_backend": ("str", "database"), "cache_directory": ("str", _TMP_CERTS),
                         "watch_external_updates": ("bool", True), "auto_reload": ("bool", True),
                         "reload_interval": (D, _dur(300))}, _NO_DEFAULT),
        "vault?": ({"address": ("str", _NO_DEFAULT), "token?": ("str", None), "mount_path": ("str", _NO_DEFAULT),
                    "certificate_path": ("str", _NO_DEFAULT), "tls_cert_path?": ("str", None),
                    "tls_key_path?": ("str", None), "ca_cert_path?": ("str", None), "skip_verify": ("bool", False),
                    "timeout": (D, _NO_DEFAULT),
                    "auth_method": ({"method_type": ("str", _NO_DEFAULT), "config": (_STR_MAP, {})}, _NO_DEFAULT)},
                   None),
        "acme": ({"directory_url": ("str", "https://acme-staging-v02.api.letsencrypt.org/directory"),
                  "contact_email": ("str", ""), "terms_of_service_agreed": ("bool", False),
                  "key_type": ("str", "ecdsa256"), "challenge_timeout": (D, _dur(300)),
                  "propagation_timeout": (D, _dur(120)),
                  "dns_providers": ({"map": {"provider": ("str", _NO_DEFAULT), "config": (_STR_MAP, {})}}, {})},
                 _NO_DEFAULT),
    },
    "waf": {
        "enabled": ("bool", True), "rules_path": ("str", "config/waf-rules.yaml"),
        "rate_limiting": ({"enabled": ("bool", True), "requests_per_minute": ("u32", 1000),
                           "burst_limit": ("u32", 100), "window_size": (D, _dur(60)),
                           "storage_backend": ("str", "memory")}, _NO_DEFAULT),
        "ip_whitelist": (["str"], []), "ip_blacklist": (["str"], []), "blocked_headers": (["str"], []),
        "blocked_user_agents": (["str"], []), "max_request_size": ("usize", 10485760),
        "block_malicious_ips": ("bool", True),
        "modsecurity": ({"enabled": ("bool", False), "rules_path": ("str", "config/modsecurity"),
                         "owasp_crs_path": ("str", "config/modsecurity/owasp-crs"), "debug_log_level": ("i32", 3),
                         "max_body_size": ("usize", 1048576), "blocking_mode": ("bool", True),
                         "rule_update_interval": ("u64", 300), "auto_update_owasp_crs": ("bool", True),
                         "owasp_crs_repo_url": ("str", "https://github.com/coreruleset/coreruleset"),
                         "owasp_crs_version": ("str", "v4.3.0")}, _NO_DEFAULT),
    },
    "cache": {
        "enabled": ("bool", True), "backend": ("str", "memory"), "ttl": (D, _dur(300)),
        "max_size": ("usize", 104857600), "compression": ("bool", True),
        "redis?": ({"url": ("str", _NO_DEFAULT), "pool_size": ("u32", _NO_DEFAULT), "timeout": (D, _NO_DEFAULT),
                    "cluster": ("bool", _NO_DEFAULT)}, None),
    },
    "database": {
        "enabled": ("bool", False), "backend": ("str", "postgres"),
        "url": ("str", "postgresql://localhost:5432/gateway"), "pool_size": ("u32", 10), "timeout": (D, _dur(30)),
        "migrations_path": ("str", "migrations"), "ssl_mode": ("str", "prefer"),
    },
    "auth": {
        "enabled": ("bool", False), "jwt_secret": ("str", "change-me-in-production"), "jwt_expiry": (D, _dur(3600)),
        "providers": ({"map": {"provider_type": ("str", _NO_DEFAULT), "config": (_STR_MAP, {})}}, {}),
        "require_auth": ("bool", False), "public_paths": (["str"], ["/health", "/metrics"]),
    },
    "monitoring": {
        "enabled": ("bool", True), "metrics_port": ("u16", 9090), "log_level": ("str", "info"),
        "health_check_path": ("str", "/health"),
        "prometheus": ({"enabled": ("bool", True), "endpoint": ("str", "/metrics"), "namespace": ("str", "gateway")},
                       _NO_DEFAULT),
        "tracing": ({"enabled": ("bool", False), "endpoint": ("str", "http://localhost:14268/api/traces"),
                     "sample_rate": ("f64", 0.1)}, _NO_DEFAULT),
    },
    "plugins": {
        "enabled": ("bool", False), "plugin_dir": ("str", "plugins"),
        "plugins": ({"map": {"enabled": ("bool", _NO_DEFAULT), "config": ({"map": "any"}, _NO_DEFAULT)}}, {}),
    },
    "upstream": {
        "backends": ([{"name": ("str", _NO_DEFAULT), "address": ("str", _NO_DEFAULT), "weight": ("u32", _NO_DEFAULT),
                       "health_check_path": ("str", _NO_DEFAULT), "max_connections": ("usize", _NO_DEFAULT),
                       "timeout": (D, _NO_DEFAULT)}], _NO_DEFAULT),
        "load_balancing": ({"algorithm": ("str", "round_robin"), "sticky_sessions": ("bool", False),
                            "session_cookie": ("str", "JSESSIONID")}, _NO_DEFAULT),
        "health_check": ({"enabled": ("bool", True), "interval": (D, _dur(30)), "timeout": (D, _dur(5)),
                          "retries": ("u32", 3), "path": ("str", "/health"), "expected_status": ("u16", 200)},
                         _NO_DEFAULT),
        "circuit_breaker": ({"enabled": ("bool", True), "failure_threshold": ("u32", 5), "timeout": (D, _dur(60)),
                             "half_open_max_calls": ("u32", 3)}, _NO_DEFAULT),
    },
    "ingress": {
        "enabled": ("bool", False), "namespace?": ("str", None), "ingress_class": ("str", "gateway"),
        "watch_all_namespaces": ("bool", False), "default_backend_protocol": ("str", "http"),
        "default_ssl_redirect": ("bool", False),
        "annotations": ({k: ("str", "gateway.awesomeapi.com.br/" + k.replace("_", "-")) for k in (
            "backend_protocol", "ssl_redirect", "rate_limit", "auth_type", "plugins", "upstream_timeout",
            "load_balancer", "circuit_breaker", "cors", "compression")}, _NO_DEFAULT),
    },
}

_DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)?\s*$")
_UNIT_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
               "d": 86400 * 10**9, None: 10**9}


def _duration_from_text(text: str) -> dict[str, int] | None:
    match = _DURATION_TEXT.match(text)
    if not match:
        return None
    nanos = round(float(match.group(1)) * _UNIT_NANOS[match.group(2)])
    return {"secs": nanos // 10**9, "nanos": nanos % 10**9}


class _Reader:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.report = Report()
        self.failed = False

    def fail(self, code: str, message: str, path: str, node: Node | None) -> None:
        self.failed = True
        self.report.error(code, f"gateway.yaml: {message}", field=path, line=line_of(node) if node else None)

    def fixable(self, code: str, message: str, path: str, node: Node | None) -> None:
        if self.strict:
            self.fail(code, message, path, node)
        else:
            self.report.warning(code, f"gateway.yaml: {message} — normalised on import", field=path,
                                line=line_of(node) if node else None)

    def value(self, node: Node, typ: Any, path: str) -> Any:
        if isinstance(typ, dict) and "map" in typ and len(typ) == 1:
            return self.mapping_of(node, typ["map"], path)
        if isinstance(typ, dict):
            return self.struct(node, typ, path)
        if isinstance(typ, list):
            if not isinstance(node, SequenceNode):
                self.fail("type", f"'{path}' must be a list, not {kind_of(node)}", path, node)
                return None
            return [self.value(item, typ[0], f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self.scalar(node, typ, path)

    def mapping_of(self, node: Node, typ: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(node, MappingNode):
            self.fail("type", f"'{path}' must be a mapping, not {kind_of(node)}", path, node)
            return None
        entries, duplicates = mapping_entries(node)
        for dup in duplicates:
            self.fail("duplicate-key", f"key '{path}.{dup.key}' appears twice", f"{path}.{dup.key}", dup.key_node)
        if typ == "any":
            return {e.key: _plain(e.value) for e in entries}
        return {e.key: self.value(e.value, typ, f"{path}.{e.key}") for e in entries}

    def struct(self, node: Node, schema: dict[str, Any], path: str) -> dict[str, Any] | None:
        if not isinstance(node, MappingNode):
            self.fail("type", f"'{path}' must be a mapping, not {kind_of(node)}", path, node)
            return None
        entries, duplicates = mapping_entries(node)
        for dup in duplicates:
            self.fail("duplicate-key", f"key '{path}.{dup.key}' appears twice", f"{path}.{dup.key}", dup.key_node)
        given = {e.key: e for e in entries}
        keys = {k.rstrip("?"): k for k in schema}
        out: dict[str, Any] = {}
        for entry in entries:
            if entry.key not in keys:
                self.report.warning("unknown-key", f"gateway.yaml: unknown key '{path}.{entry.key}' is ignored by "
                                    "the Gateway", field=f"{path}.{entry.key}", line=line_of(entry.key_node))
        for name, spec_key in keys.items():
            spec = schema[spec_key]
            typ, default = (spec, _NO_DEFAULT) if isinstance(spec, dict) else spec
            where = f"{path}.{name}".lstrip(".")
            optional = spec_key.endswith("?")
            found = given.get(name)
            if found is None or (optional and is_null(found.value)):
                if optional:
                    continue
                if default is _NO_DEFAULT:
                    self.fail("missing-key", f"required key '{where}' is missing and has no default (FORMATS §b.2)",
                              where, node)
                    continue
                self.fixable("missing-key", f"required key '{where}' is missing; the Gateway refuses to start "
                             f"without it (code default {_show(default)})", where, node)
                out[name] = default
                continue
            out[name] = self.value(found.value, typ, where)
        return out

    def scalar(self, node: Node, typ: str, path: str) -> Any:
        if typ == "any":
            return _plain(node)
        if typ == D:
            return self.duration(node, path)
        if not isinstance(node, ScalarNode) or is_null(node):
            self.fail("type", f"'{path}' must be {typ}, not {kind_of(node)}", path, node)
            return None
        if typ == "str":
            if node.tag != STR_TAG:
                self.fixable("number-as-string", f"'{path}' is {kind_of(node)} ({node.value}); write it as a "
                             "quoted string", path, node)
            return node.value
        if typ == "bool":
            if node.tag != BOOL_TAG:
                self.fail("type", f"'{path}' must be true or false, not {node.value!r}", path, node)
                return None
            return node.value.lower() == "true"
        if typ == "f64":
            number = to_float(node)
            if number is None:
                self.fail("type", f"'{path}' must be a number, not {node.value!r}", path, node)
            return number
        number = to_int(node)
        low, high = (-(2**31), 2**31 - 1) if typ == "i32" else (0, UINT[typ])
        if number is None or not low <= number <= high:
            self.fail("type", f"'{path}' must be an integer ({typ}), not {node.value!r}", path, node)
            return None
        return number

    def duration(self, node: Node, path: str) -> dict[str, int] | None:
        if isinstance(node, MappingNode):
            parts = self.struct(node, {"secs": ("u64", _NO_DEFAULT), "nanos": ("u32", _NO_DEFAULT)}, path)
            if parts is not None and parts.get("nanos") is not None and parts["nanos"] >= 10**9:
                self.fail("type", f"'{path}.nanos' must be below 1000000000", path, node)
            return parts
        if isinstance(node, SequenceNode) and len(node.value) == 2:
            secs, nanos = (self.scalar(n, t, f"{path}[{i}]") for i, (n, t) in enumerate(zip(node.value, ("u64", "u32"),
                                                                                           strict=True)))
            return {"secs": secs, "nanos": nanos}
        if isinstance(node, ScalarNode) and node.tag == STR_TAG and (parsed := _duration_from_text(node.value)):
            self.fixable("duration-string", f"duration '{path}' is written as the string {node.value!r}; the Gateway "
                         f"only accepts {{secs: {parsed['secs']}, nanos: {parsed['nanos']}}}", path, node)
            return parsed
        self.fail("type", f"duration '{path}' must be {{secs: <u64>, nanos: <u32>}}, not {kind_of(node)}", path, node)
        return None


def _plain(node: Node) -> Any:
    import yaml

    return yaml.load(yaml.serialize(node), Loader=yaml.SafeLoader)  # noqa: S506


def _show(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"secs", "nanos"}:
        return f"{{secs: {value['secs']}, nanos: {value['nanos']}}}"
    return repr(value)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    enabled: bool = True
    requests_per_minute: int = 1000
    burst_limit: int = 100
    window_secs: float = 60.0


@dataclass(frozen=True, slots=True)
class WafSettings:
    """The part of gateway.yaml that decides verdicts (FORMATS §a.3); defaults are the Gateway's code defaults."""

    enabled: bool = True
    max_request_size: int = 10485760
    rate_limiting: RateLimitSettings = field(default_factory=RateLimitSettings)
    ip_whitelist: tuple[str, ...] = ()
    ip_blacklist: tuple[str, ...] = ()
    blocked_headers: tuple[str, ...] = ()
    blocked_user_agents: tuple[str, ...] = ()
    modsecurity_enabled: bool = False

    def ip_networks(self, entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Entries the Gateway keeps: single IPs or CIDRs; the rest it drops silently."""
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False) if "/" in entry
                                else ipaddress.ip_network(ipaddress.ip_address(entry)))
            except ValueError:
                continue
        return networks


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """A whole gateway.yaml, normalised: ``document`` holds every key with durations as ``{secs, nanos}``."""

    document: dict[str, Any]

    @property
    def waf(self) -> WafSettings:
        waf = self.document["waf"]
        rl = waf["rate_limiting"]
        window = rl["window_size"]
        return WafSettings(
            enabled=waf["enabled"], max_request_size=waf["max_request_size"],
            rate_limiting=RateLimitSettings(rl["enabled"], rl["requests_per_minute"], rl["burst_limit"],
                                            window["secs"] + window["nanos"] / 1e9),
            ip_whitelist=tuple(waf["ip_whitelist"]), ip_blacklist=tuple(waf["ip_blacklist"]),
            blocked_headers=tuple(waf["blocked_headers"]), blocked_user_agents=tuple(waf["blocked_user_agents"]),
            modsecurity_enabled=waf["modsecurity"]["enabled"],
        )


def read_gateway_config(text: str, *, strict: bool) -> tuple[GatewayConfig | None, Report]:
    reader = _Reader(strict)
    try:
        root = compose(text)
    except YamlSyntaxError as exc:
        reader.report.error("yaml", f"gateway.yaml: {exc}", line=exc.line)
        return None, reader.report
    if root is None:
        reader.fail("empty", "the file is empty", "", None)
        return None, reader.report
    document = reader.struct(root, SCHEMA, "")
    if document is not None and not reader.failed:
        _semantic_checks(document, reader)
    if document is None or reader.failed:
        return None, reader.report
    return GatewayConfig(document), reader.report


def _semantic_checks(doc: dict[str, Any], reader: _Reader) -> None:
    """GatewayConfig::validate, and what the Gateway silently drops or overrides."""
    bind = doc["server"]["bind_address"]
    host, _, port = bind.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        ok = port.isdigit() and int(port) <= 65535
    except ValueError:
        ok = False
    if not ok:
        reader.fail("bind-address", f"'server.bind_address' {bind!r} is not a socket address (ip:port)",
                    "server.bind_address", None)
    if doc["server"]["worker_threads"] == 0:
        reader.fail("worker-threads", "'server.worker_threads' must be greater than 0", "server.worker_threads", None)
    backends = doc["upstream"]["backends"] or []
    if not backends:
        reader.fail("backends", "'upstream.backends' needs at least one backend", "upstream.backends", None)
    for i, backend in enumerate(backends):
        if backend and not backend.get("address"):
            reader.fail("backend-address", f"'upstream.backends[{i}].address' must not be empty",
                        f"upstream.backends[{i}].address", None)
    for key in ("ip_whitelist", "ip_blacklist"):
        for i, entry in enumerate(doc["waf"][key]):
            if not WafSettings().ip_networks((entry,)):
                reader.report.warning("ip-entry", f"gateway.yaml: 'waf.{key}[{i}]' {entry!r} is not an IP or CIDR; "
                                      "the Gateway drops it silently", field=f"waf.{key}[{i}]")
    for i, entry in enumerate(doc["waf"]["blocked_headers"]):
        if entry.startswith("regex:"):
            reader.report.warning("header-regex", f"gateway.yaml: 'waf.blocked_headers[{i}]' uses 'regex:', which the "
                                  "engine does not understand: it checks for a header literally named "
                                  f"{entry!r}", field=f"waf.blocked_headers[{i}]")
    for path, value in _strings(doc, ""):
        if "${" in value:
            reader.report.warning("env-substitution", f"gateway.yaml: '{path}' contains {value!r}; the Gateway does "
                                  "no ${ENV} substitution and uses the text literally", field=path)


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _strings(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _strings(v, f"{path}[{i}]")]
    return []


def load_gateway_config(text: str) -> Imported[GatewayConfig]:
    """Import a gateway.yaml, filling documented defaults and converting "30s" durations (with warnings)."""
    config, report = read_gateway_config(text, strict=False)
    if config is None:
        raise FormatError("cannot import gateway.yaml", report.findings)
    return Imported(config, report)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    return quote(str(value))


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key not in ("true", "false", "null", "True", "False") else quote(key)


def _dump(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and set(item) == {"secs", "nanos"}:
                lines.append(f"{pad}{_key(key)}: {{secs: {item['secs']}, nanos: {item['nanos']}}}")
            elif isinstance(item, dict) and item:
                lines += [f"{pad}{_key(key)}:"] + _dump(item, indent + 2)
            elif isinstance(item, list) and item:
                lines += [f"{pad}{_key(key)}:"] + _dump(item, indent + 2)
            elif isinstance(item, dict | list):
                lines.append(f"{pad}{_key(key)}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
        return lines
    for item in value:
        if isinstance(item, dict | list) and item:
            sub = _dump(item, indent + 2)
            lines.append(f"{pad}- {sub[0].lstrip()}")
            lines += sub[1:]
        else:
            empty = "{}" if isinstance(item, dict) else "[]"
            lines.append(f"{pad}- {empty if isinstance(item, dict | list) else _scalar(item)}")
    return lines


def dump_gateway_config(config: GatewayConfig) -> str:
    """A gateway.yaml the Gateway's loader accepts: every key present, durations as {secs, nanos}."""
    return "\n".join(_dump(config.document, 0)) + "\n"
