"""Agent configuration: a small YAML file and/or CLI flags (flags win).

Example (``gateway-agent --config /etc/gateway-agent.yaml``), for a Gateway reading its certificate cache
directory plus a plain nginx as the data plane::

    server: worker-1.internal:50051,worker-2.internal:50051  # run_grpc replicas: the next one when a stream ends
    instance_id: edge-1                    # optional: must match the certificate's name if given
    group: default                         # optional: must match the group the certificate was issued for
    ca: /etc/gateway-agent/ca.crt          # from `manage.py issue_gateway_cert edge-1 --out DIR`
    cert: /etc/gateway-agent/edge-1.crt
    key: /etc/gateway-agent/edge-1.key
    state_dir: /var/lib/gateway-agent      # versions.json (what it runs) and journal.jsonl
    cert_dir: /var/lib/gateway/certs       # <domain>.crt (leaf), <domain>.key, <domain>.chain.pem
    challenge_dir: /var/www/acme-challenge # <token> -> key authorization
    rules_file: /etc/gateway/waf-rules.yaml
    config_file: /etc/gateway/gateway.yaml
    emergency_file: /etc/nginx/conf.d/10-gateway-emergency.conf  # .conf: rendered as nginx deny lines
    ip_lists_include: /etc/nginx/conf.d/20-gateway-ip-lists.conf  # after the emergency include
    modsecurity_dir: /etc/gateway/modsecurity  # = gateway.yaml waf.modsecurity.rules_path (the SecRule .conf file)
    nginx_include: /etc/nginx/conf.d/gateway-tls.conf
    nginx_listen: "443"
    access_log: /var/log/nginx/gateway.json.log  # ship it: nginx writes it (log_format in the emergency .conf)
    nginx_http_listen: "80"
    check_command: nginx -t
    reload_command: nginx -s reload
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass
class AgentConfig:
    server: str = "127.0.0.1:50051"   # one address, or several (comma-separated): run_grpc replicas, tried in turn
    instance_id: str = ""               # empty: the name its client certificate was issued to
    group: str = ""                    # empty: the credential's group (the Worker decides; a mismatch is refused)
    ca: str = ""                       # the Worker's CA (ca.crt from issue_gateway_cert)
    cert: str = ""                     # this Gateway's client certificate
    key: str = ""
    server_name: str = ""              # TLS name to verify (default: host of `server`)
    insecure: bool = False             # plaintext, development only
    state_dir: str = "/var/lib/gateway-agent"
    cert_dir: str = ""                 # <domain>.crt / .key / .chain.pem (FORMATS §c.3)
    challenge_dir: str = ""            # <token> containing the key authorization
    rules_file: str = ""               # waf_rules content
    config_file: str = ""              # config content
    emergency_file: str = ""           # emergency_rules as YAML
    # gateway.yaml's waf.ip_blacklist / ip_whitelist as nginx deny/allow (an include in http {}); include it after
    # emergency_file when that is a .conf, so an emergency block also holds for a whitelisted address
    ip_lists_include: str = ""
    modsecurity_dir: str = ""          # the modsecurity resource's .conf file goes here (gateway.yaml's rules_path)
    check_command: list[str] = field(default_factory=list)   # e.g. nginx -t -c conf -p prefix
    reload_command: list[str] = field(default_factory=list)  # e.g. nginx -s reload -c conf -p prefix
    command_timeout: float = 30.0
    nginx_include: str = ""            # render nginx server blocks here (the second target)
    nginx_listen: str = "443"          # listen address of those TLS servers
    nginx_http_listen: str = ""        # if set, also a port-80 style server answering ACME challenges
    confirm_served: bool = True        # after a reload, ACK only once nginx presents the new certificates
    backoff_max: float = 30.0
    # the JSON access log nginx writes (its log_format and access_log lines go into emergency_file when that is an
    # nginx .conf include) and the agent ships on the push stream, resuming at the Worker's acknowledged offset
    access_log: str = ""
    log_batch_lines: int = 500
    log_poll_seconds: float = 0.5
    log_ack_timeout: float = 30.0      # no LogAck by then: the batch is resent (the Worker never stores it twice)

    @property
    def servers(self) -> list[str]:
        """The Worker's addresses; after a stream ends the agent reconnects to the next one (replica failover)."""
        return [s.strip() for s in self.server.split(",") if s.strip()]

    @classmethod
    def load(cls, path: str | None, overrides: dict[str, Any]) -> AgentConfig:
        data: dict[str, Any] = {}
        if path:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping")
            data.update(loaded)
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown agent settings: {unknown}")
        for name in ("check_command", "reload_command"):
            if isinstance(data.get(name), str):
                data[name] = shlex.split(data[name])
        if isinstance(data.get("server"), list):  # YAML: a list of replicas
            data["server"] = ",".join(str(s) for s in data["server"])
        cfg = cls(**data)
        if not cfg.servers:
            raise ValueError("server: no Worker address given")
        return cfg


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with the settings below (flags override it)")
    for f in fields(AgentConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):  # --insecure / --no-insecure; unset keeps the file's or the default value
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("check_command", "reload_command"):
            p.add_argument(flag, dest=f.name, help="a shell-quoted command line")
        elif f.type in ("float", float):
            p.add_argument(flag, dest=f.name, type=float)
        elif f.type in ("int", int):
            p.add_argument(flag, dest=f.name, type=int)
        else:
            p.add_argument(flag, dest=f.name)
    p.add_argument("--log-level", default="INFO")
    return p
