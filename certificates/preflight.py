"""Pre-flight before any order: do the names resolve where HTTP-01 needs them, and does CAA allow the CA?

CAA follows RFC 8659: for each name the relevant RRset is the first non-empty CAA RRset found climbing from the
name (a wildcard's base name) towards the root, root excluded (§3); ``issuewild`` properties, when the RRset has
any, decide for a wildcard, else ``issue`` (§4.3); an empty RRset everywhere allows any CA; an unknown tag with
the critical flag forbids issuance (§4.1); a lookup that fails (SERVFAIL, timeout) is a refusal, never a pass.

Pure functions over dnspython; no models. ``resolver`` is ``host:port`` (the resolver the CA uses) or empty for
the system's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

CRITICAL = 128


@dataclass
class Check:
    check: str  # "resolve" | "caa"
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class LookupFailed(Exception):
    pass


def _resolver(resolver: str, timeout: float) -> dns.resolver.Resolver:
    if not resolver:
        res = dns.resolver.Resolver()
    else:
        host, _, port = resolver.rpartition(":")
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [host or resolver]
        res.port = int(port) if host else 53
    res.lifetime = timeout
    res.timeout = timeout
    return res


def _lookup(res: dns.resolver.Resolver, name: str, rdtype: str) -> list[object]:
    """Records of ``rdtype`` at ``name`` (CNAMEs followed); [] when none exist; LookupFailed otherwise."""
    try:
        answer = res.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoAnswer) as exc:
        raise LookupFailed(f"{rdtype} lookup of {name} failed: {exc.__class__.__name__}") from exc
    return list(answer.rrset or [])


def check_resolves(name: str, resolver: str = "", timeout: float = 3.0) -> Check:
    """HTTP-01 reaches ``name`` on port 80 by its A/AAAA records: it must have at least one."""
    res = _resolver(resolver, timeout)
    addresses: list[str] = []
    try:
        for rdtype in ("A", "AAAA"):
            addresses += [str(r) for r in _lookup(res, name, rdtype)]
    except LookupFailed as exc:
        return Check("resolve", name, False, str(exc))
    if not addresses:
        return Check("resolve", name, False, f"{name} has no A or AAAA record: HTTP-01 cannot reach it")
    return Check("resolve", name, True, ", ".join(sorted(addresses)))


def relevant_caa(name: str, res: dns.resolver.Resolver) -> tuple[str, list[tuple[int, str, str]]]:
    """(where found, [(flags, tag, value)]) — the first non-empty CAA RRset climbing from ``name``; ("", [])."""
    current = dns.name.from_text(name)
    while current != dns.name.root:
        records = _lookup(res, current.to_text(), "CAA")
        if records:
            return current.to_text(omit_final_dot=True), [
                (int(r.flags), r.tag.decode().lower(), r.value.decode()) for r in records]  # type: ignore[attr-defined]
        current = current.parent()
    return "", []


def _issuer_domain(value: str) -> str:
    """The issuer-domain-name of an issue/issuewild value (before ';', trimmed); "" means "no CA"."""
    return value.split(";", 1)[0].strip().lower().rstrip(".")


def caa_decision(name: str, records: list[tuple[int, str, str]], ca_identifier: str) -> tuple[bool, str]:
    """Whether the RRset ``records`` (relevant to ``name``) lets the CA named ``ca_identifier`` issue."""
    if not records:
        return True, "no CAA record up to the root: any CA may issue"
    known = {"issue", "issuewild", "iodef", "contactemail", "contactphone"}
    for flags, tag, value in records:
        if flags & CRITICAL and tag not in known:
            return False, f"CAA has an unknown critical property {tag!r} ({value!r}): issuance forbidden"
    wildcard = name.startswith("*.")
    tag = "issuewild" if wildcard and any(t == "issuewild" for _, t, _ in records) else "issue"
    values = [v for _, t, v in records if t == tag]
    if not values:
        return True, f"CAA has no {tag} property: it does not restrict issuance"
    allowed = sorted({d for d in map(_issuer_domain, values) if d})
    ca = ca_identifier.strip().lower().rstrip(".")
    if ca and ca in allowed:
        return True, f"CAA {tag} allows {ca}"
    if not allowed:
        return False, f"CAA {tag} \";\" forbids every CA"
    who = f"the configured CA {ca!r}" if ca else "this CA (its ACME account has no CAA identifier configured)"
    return False, f"CAA {tag} allows only {', '.join(allowed)}: it forbids {who}"


def check_caa(name: str, ca_identifier: str, resolver: str = "", timeout: float = 3.0) -> Check:
    res = _resolver(resolver, timeout)
    base = name[2:] if name.startswith("*.") else name
    try:
        where, records = relevant_caa(base, res)
    except LookupFailed as exc:
        return Check("caa", name, False, f"{exc}: CAA cannot be checked, so issuance is refused")
    ok, why = caa_decision(name, records, ca_identifier)
    return Check("caa", name, ok, f"{why}" + (f" (records at {where})" if where else ""))


def run(domains: list[str], *, ca_identifier: str, http01: bool, resolver: str = "",
        timeout: float = 3.0) -> list[Check]:
    """Every check for every name: CAA always, resolution when HTTP-01 will validate (not for wildcards)."""
    checks: list[Check] = []
    for name in domains:
        if http01 and not name.startswith("*."):
            checks.append(check_resolves(name, resolver, timeout))
        checks.append(check_caa(name, ca_identifier, resolver, timeout))
    return checks
