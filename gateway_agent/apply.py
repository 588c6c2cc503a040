"""Validate one resource, write it into the Gateway's layout, run check + reload; undo everything on failure."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import subprocess
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gateway_worker.v1 import gateway_worker_pb2 as pb
from google.protobuf import json_format

from .config import AgentConfig
from .files import Transaction
from .logship import render_log_directives
from .probe import wait_until_served

logger = logging.getLogger(__name__)

_DOMAIN_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LISTEN_RE = re.compile(r"^[\w.:\[\]-]+$")
_CONF_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.conf$")
# which .conf file in modsecurity_dir the agent wrote (the directory may hold the operator's own files too: the
# agent replaces and removes only its own); no .conf suffix, so the Gateway's loader never reads it
MODSECURITY_MANIFEST = ".gateway-agent-modsecurity"


# ACME challenge tokens are files the data plane serves straight from the challenge directory: writing them is
# enough. Reloading nginx for every token set would put a config test and a reload (with every certificate
# loaded again) on the hot path of each ACME order.
NO_RELOAD_TYPES = {"acme_challenges"}


class ApplyError(Exception):
    """Why a resource was rejected (sent back in the NACK; never contains key material)."""


def _pub(obj: object) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def validate_certificate(c: pb.Certificate) -> None:
    if not c.domains:
        raise ApplyError(f"certificate {c.name!r} has no domains")
    for d in c.domains:
        if not _DOMAIN_RE.match(d) or len(d) > 253:
            raise ApplyError(f"certificate {c.name!r}: invalid domain {d!r}")
    try:
        leaf = x509.load_pem_x509_certificate(c.cert_pem.encode())
    except ValueError as exc:
        raise ApplyError(f"certificate {c.name!r}: cert_pem is not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(c.key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ApplyError(f"certificate {c.name!r}: key_pem is not an unencrypted PEM private key") from None
    if _pub(key) != _pub(leaf):
        raise ApplyError(f"certificate {c.name!r}: the private key does not match the certificate")
    if c.chain_pem.strip():
        try:
            x509.load_pem_x509_certificates(c.chain_pem.encode())
        except ValueError as exc:
            raise ApplyError(f"certificate {c.name!r}: chain_pem is not PEM ({exc})") from None


class Applier:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        # certificate entries validated by an earlier apply, by the digest of their PEM fields: the leaf as the
        # Gateway reads it and its serial. A renewal changes one entry of a set of hundreds: the others are not
        # parsed and matched again (the same bytes give the same answer).
        self._checked: dict[bytes, tuple[bytes, str]] = {}
        if cfg.nginx_include and not _LISTEN_RE.match(cfg.nginx_listen):
            raise ValueError(f"nginx_listen {cfg.nginx_listen!r} is not an address")

    def apply(self, update: pb.ResourceUpdate) -> None:
        kind = update.WhichOneof("resource")
        if kind != update.type:
            raise ApplyError(f"update type {update.type!r} carries {kind!r}")
        resource = getattr(update, kind)
        checksum = hashlib.sha256(resource.SerializeToString(deterministic=True)).hexdigest()
        if update.checksum and checksum != update.checksum:
            raise ApplyError(f"checksum mismatch for {kind} version {update.version}")
        # challenge tokens live minutes and are pushed again if lost: no fsync on their path to the ACK
        tx = Transaction(durable=kind not in NO_RELOAD_TYPES)
        reloading = False
        self._to_confirm: dict[str, str] = {}
        self._include_unchanged = False
        try:
            getattr(self, f"_apply_{kind}")(resource, tx)
            tx.sync()
            if tx.changed and kind not in NO_RELOAD_TYPES:
                if not self._check_is_redundant():
                    self._run("check", self.cfg.check_command)
                reloading = True
                self._run("reload", self.cfg.reload_command)
                self._confirm_served()
        except Exception as exc:
            tx.rollback()
            if reloading and self.cfg.reload_command:
                try:  # the reload may have half-happened: load the restored files again
                    self._run("reload", self.cfg.reload_command)
                except ApplyError:
                    logger.warning("reload after rollback failed too")
            if isinstance(exc, ApplyError):
                raise
            raise ApplyError(f"{type(exc).__name__}: {exc}") from exc

    def _check_is_redundant(self) -> bool:
        """A renewal that only rewrote certificate and key files, under the same rendered nginx include, does not
        need ``check_command``: every pair was parsed and matched here (``validate_certificate``), the
        configuration nginx parses is the one it already runs, and ``nginx -s reload`` parses it again anyway. If
        nginx still refuses the new files, its master keeps the old generation, the served check after the reload
        sees the old serial, and the change is rolled back and NACKed. Only with that served check configured."""
        return (self._include_unchanged and bool(self._to_confirm) and self.cfg.confirm_served
                and bool(self.cfg.reload_command))

    def _confirm_served(self) -> None:
        if not (self._to_confirm and self.cfg.confirm_served and self.cfg.reload_command):
            return
        # One reload loads one configuration with every certificate in it: when one changed certificate is
        # served, the new generation is live for all of them, so probing one keeps this cheap for big sets.
        domain, serial = next(reversed(self._to_confirm.items()))
        wrong = wait_until_served({domain: serial}, self.cfg.nginx_listen, self.cfg.command_timeout)
        if wrong:
            got = wrong[domain]
            raise ApplyError(f"after the reload nginx still presents {got or 'no certificate'} for {domain} "
                             f"instead of {serial}")

    def _run(self, what: str, command: list[str]) -> None:
        if not command:
            return
        try:
            res = subprocess.run(command, capture_output=True, text=True, timeout=self.cfg.command_timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ApplyError(f"{what} command failed: {exc}") from None
        if res.returncode != 0:
            out = (res.stderr or res.stdout).strip()[-800:]
            raise ApplyError(f"{what} command exited {res.returncode}: {out}")

    def _dir(self, value: str, name: str) -> Path:
        if not value:
            raise ApplyError(f"this agent has no {name} configured")
        return Path(value)

    def _check(self, c: pb.Certificate) -> tuple[bytes, str]:
        """Validate ``c`` unless the same entry was validated before; the leaf as the Gateway reads it (first
        and alone in ``<domain>.crt``) and its serial."""
        digest = hashlib.sha256("\0".join([*c.domains, c.cert_pem, c.key_pem, c.chain_pem]).encode()).digest()
        if digest not in self._checked:
            validate_certificate(c)
            leaf = x509.load_pem_x509_certificate(c.cert_pem.encode())
            self._checked[digest] = (leaf.public_bytes(serialization.Encoding.PEM), format(leaf.serial_number, "x"))
        self._now_checked[digest] = self._checked[digest]
        return self._checked[digest]

    def _apply_certificates(self, res: pb.CertificateSet, tx: Transaction) -> None:
        self._now_checked: dict[bytes, tuple[bytes, str]] = {}
        self._leaves = [self._check(c) for c in res.certificates]  # (leaf PEM, serial) per entry
        self._checked = self._now_checked  # forget entries no longer in the set
        cert_dir = self._dir(self.cfg.cert_dir, "cert_dir")
        keep: set[str] = set()
        for c, (leaf, _) in zip(res.certificates, self._leaves, strict=True):
            for d in c.domains:
                keep.update({f"{d}.crt", f"{d}.key", f"{d}.chain.pem"})
                tx.write(cert_dir / f"{d}.key", c.key_pem.encode(), 0o600)  # key first: the Gateway needs it
                if c.chain_pem.strip():
                    tx.write(cert_dir / f"{d}.chain.pem", c.chain_pem.encode())
                else:
                    tx.delete(cert_dir / f"{d}.chain.pem")
                tx.write(cert_dir / f"{d}.crt", leaf)
        if cert_dir.exists():
            for p in sorted(cert_dir.iterdir()):
                if p.is_file() and not p.name.startswith(".") and p.name not in keep \
                        and p.name.endswith((".crt", ".key", ".chain.pem")):
                    tx.delete(p)
        if self.cfg.nginx_include:
            self._render_nginx(res, cert_dir, tx)

    def _render_nginx(self, res: pb.CertificateSet, cert_dir: Path, tx: Transaction) -> None:
        include = Path(self.cfg.nginx_include)
        full_dir = include.parent / "gateway-agent-certs"
        blocks = ["# rendered by gateway-agent from the Worker's certificates; do not edit\n"]
        keep = set()
        for c, (leaf, serial) in zip(res.certificates, self._leaves, strict=True):
            primary = c.domains[0]
            fullchain = full_dir / f"{primary}.fullchain.crt"
            keep.add(fullchain.name)
            if tx.write(fullchain, leaf + c.chain_pem.encode()):  # new: confirm nginx serves it
                self._to_confirm[primary] = serial
            blocks.append(
                f"server {{\n    listen {self.cfg.nginx_listen} ssl;\n    server_name {' '.join(c.domains)};\n"
                f"    ssl_certificate {fullchain};\n    ssl_certificate_key {cert_dir / (primary + '.key')};\n"
                f"    location / {{ return 404; }}\n}}\n")
        if self.cfg.nginx_http_listen and self.cfg.challenge_dir and res.certificates:
            names = " ".join(sorted({d for c in res.certificates for d in c.domains}))
            blocks.append(
                f"server {{\n    listen {self.cfg.nginx_http_listen};\n    server_name {names};\n"
                f"    location /.well-known/acme-challenge/ {{\n        alias {Path(self.cfg.challenge_dir)}/;\n"
                f"        default_type text/plain;\n        try_files $uri =404;\n    }}\n"
                f"    location / {{ return 301 https://$host$request_uri; }}\n}}\n")
        if full_dir.exists():
            for p in full_dir.iterdir():
                if p.name.endswith(".fullchain.crt") and p.name not in keep:
                    tx.delete(p)
        self._include_unchanged = not tx.write(include, "".join(blocks).encode())

    def _apply_acme_challenges(self, res: pb.ChallengeSet, tx: Transaction) -> None:
        d = self._dir(self.cfg.challenge_dir, "challenge_dir")
        tokens = {}
        for ch in res.challenges:
            if not _TOKEN_RE.match(ch.token):
                raise ApplyError(f"invalid ACME token {ch.token!r}")
            if not ch.key_authorization.startswith(ch.token + "."):
                raise ApplyError(f"key authorization of token {ch.token!r} does not start with the token")
            tokens[ch.token] = ch.key_authorization
        for token, keyauth in tokens.items():
            tx.write(d / token, keyauth.encode())
        if d.exists():
            for p in d.iterdir():
                if p.is_file() and not p.name.startswith(".") and p.name not in tokens:
                    tx.delete(p)

    def _apply_file(self, path_value: str, name: str, res: pb.FileContent, tx: Transaction) -> None:
        path = self._dir(path_value, name)
        if path.suffix in (".yaml", ".yml") or res.name.endswith((".yaml", ".yml")):
            try:
                yaml.safe_load(res.content)
            except yaml.YAMLError as exc:
                raise ApplyError(f"{name}: not valid YAML: {exc}") from None
        tx.write(path, res.content.encode())

    def _apply_waf_rules(self, res: pb.FileContent, tx: Transaction) -> None:
        self._apply_file(self.cfg.rules_file, "rules_file", res, tx)

    def _apply_config(self, res: pb.FileContent, tx: Transaction) -> None:
        self._apply_file(self.cfg.config_file, "config_file", res, tx)
        if self.cfg.ip_lists_include:  # the data plane enforces the Gateway's IP filter too
            tx.write(Path(self.cfg.ip_lists_include), render_ip_lists(yaml.safe_load(res.content)).encode())

    def _apply_modsecurity(self, res: pb.FileContent, tx: Transaction) -> None:
        """The Worker's one SecRule file for this group, byte for byte, into the directory the Gateway scans; the
        file the agent wrote before under another name is removed (the operator's own files are left alone)."""
        d = self._dir(self.cfg.modsecurity_dir, "modsecurity_dir")
        if not _CONF_NAME_RE.match(res.name):
            raise ApplyError(f"modsecurity file name {res.name!r} is not a plain <name>.conf")
        manifest = d / MODSECURITY_MANIFEST
        previous = manifest.read_text().strip() if manifest.exists() else ""
        if previous and previous != res.name and _CONF_NAME_RE.match(previous):
            tx.delete(d / previous)
        tx.write(d / res.name, res.content.encode())
        tx.write(manifest, (res.name + "\n").encode())

    def _apply_emergency_rules(self, res: pb.EmergencyRuleSet, tx: Transaction) -> None:
        path = self._dir(self.cfg.emergency_file, "emergency_file")
        if path.suffix == ".conf":  # an nginx include (in http {}): the data plane enforces IP/CIDR blocks itself
            text = render_access_rules(res)
            if self.cfg.access_log:  # the JSON access log the agent ships is configured in the same include
                text += render_log_directives(self.cfg.access_log)
            tx.write(path, text.encode())
            return
        data = json_format.MessageToDict(res, preserving_proto_field_name=True)
        tx.write(path, yaml.safe_dump(data, sort_keys=True).encode())


def render_access_rules(res: pb.EmergencyRuleSet) -> str:
    """IP and CIDR block rules as nginx ``deny`` entries for the ``http {}`` context (every server inherits them).

    Count-only (``log``) rules and patterns are listed as comments: nginx has no count-only deny, and patterns are
    the Gateway's to match. Values are parsed as networks first, so nothing else can reach the nginx config.
    """
    lines = ["# rendered by gateway-agent from the Worker's emergency rules; do not edit\n"]
    for rule in res.rules:
        if rule.kind not in ("ip", "cidr"):
            lines.append(f"# {rule.id}: {rule.kind} rule, matched by the Gateway, not by nginx\n")
            continue
        try:
            net = ipaddress.ip_network(rule.value, strict=False)
        except ValueError:
            raise ApplyError(f"emergency rule {rule.id!r}: {rule.value!r} is not an IP or CIDR") from None
        if rule.action == "block":
            lines.append(f"deny {net};\n")
        else:
            lines.append(f"# {rule.id}: count only ({rule.action}) {net}\n")
    return "".join(lines)


def _networks(values: object, key: str) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise ApplyError(f"gateway.yaml waf.{key} is not a list")
    nets = []
    for number, value in enumerate(values, 1):
        try:
            nets.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError:  # the Gateway drops such an entry silently; the raw value never reaches nginx's config
            nets.append(f"# waf.{key} entry {number} dropped: not an IP or CIDR (the Gateway drops it too)")
    return nets


def render_ip_lists(document: object) -> str:
    """gateway.yaml's IP filter (FORMATS §a.3 step 2) as nginx access rules for the ``http {}`` context.

    The Gateway blocks an address on ``ip_blacklist``, and, when ``ip_whitelist`` is not empty, every address not
    on it; with ``waf.enabled: false`` it filters nothing. nginx takes the first matching rule, so the deny lines
    come first, then the allow lines and ``deny all``.
    """
    lines = ["# rendered by gateway-agent from gateway.yaml's waf IP lists; do not edit\n"]
    waf = document.get("waf") if isinstance(document, dict) else None
    if not isinstance(waf, dict):
        return "".join(lines + ["# no waf section: no IP filter\n"])
    if waf.get("enabled", True) is False:
        return "".join(lines + ["# waf.enabled is false: the Gateway filters no address\n"])
    for net in _networks(waf.get("ip_blacklist"), "ip_blacklist"):
        lines.append(net + "\n" if net.startswith("#") else f"deny {net};\n")
    whitelist = _networks(waf.get("ip_whitelist"), "ip_whitelist")
    for net in whitelist:
        lines.append(net + "\n" if net.startswith("#") else f"allow {net};\n")
    if any(not net.startswith("#") for net in whitelist):
        lines.append("deny all;\n")
    return "".join(lines)


def journal_line(update: pb.ResourceUpdate, result: str) -> str:
    return json.dumps({"type": update.type, "version": update.version, "nonce": update.nonce,
                       "result": result}) + "\n"
