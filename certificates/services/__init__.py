"""Certificate behaviour, split by concept: policy (when), issuance (one ACME order), renewal (the attempt),
failover (temporary certificates), versions (store/current/rollback/retire), distribution (what Gateways get),
scan (beat selection), revocation, catalog (people's edits to accounts, DNS servers and certificates, audited), and
seams (the only door to the other apps)."""
