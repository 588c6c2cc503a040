"""What the Gateways are told to serve: the ``certificates`` and ``acme_challenges`` resources."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Q

from certificates.models import AcmeChallenge, Certificate, ChallengeType, OrderStatus

logger = logging.getLogger(__name__)

LIVE_ORDER = [OrderStatus.PENDING, OrderStatus.AUTHORIZING, OrderStatus.FINALIZING]


def _for_group(group: Any, prefix: str = "") -> Q:
    """Rows with no group (every group) or this group."""
    field = f"{prefix}gateway_group"
    return Q(**{f"{field}__isnull": True}) | Q(**{field: group})


def build_certificates(group: Any) -> dict[str, Any]:
    """The current version of every certificate this group serves (one query)."""
    rows = (Certificate.objects.filter(_for_group(group), current_version__isnull=False)
            .select_related("current_version").order_by("name"))
    out = []
    for cert in rows:
        v = cert.current_version
        assert v is not None
        out.append({
            "name": cert.name, "domains": list(cert.domains), "cert_pem": v.cert_pem, "chain_pem": v.chain_pem,
            "key_pem": v.key_pem, "temporary": v.is_temporary, "serial": v.serial_hex,
            "fingerprint": v.fingerprint_sha256, "not_after": int(v.not_after.timestamp()), "version_id": v.pk,
        })
    return {"certificates": out}


def build_acme_challenges(group: Any) -> dict[str, Any]:
    """Live HTTP-01 tokens of orders for certificates this group serves (one query)."""
    rows = (AcmeChallenge.objects.filter(_for_group(group, "order__certificate__"), order__status__in=LIVE_ORDER,
                                         order__challenge_type=ChallengeType.HTTP_01)
            .order_by("token").values("domain", "token", "key_authorization"))
    return {"challenges": list(rows)}


def register_resources() -> None:
    """Called from ``CertificatesConfig.ready()``."""
    from certificates.services import seams  # imported late: apps load before their services

    seams.register_builder("certificates", build_certificates)
    seams.register_builder("acme_challenges", build_acme_challenges)
