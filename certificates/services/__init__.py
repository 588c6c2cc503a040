"""Certificate behaviour, split by concept: policy (when), issuance (one ACME order), renewal (the attempt),
failover (temporary certificates), versions (store/current/rollback/retire), distribution (what Gateways get),
scan (beat selection), revocation."""
