"""Many orders at once through the real push plane: every order's tokens are on nginx before it is answered."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from certificates.services import renewal
from tests.certificates_support import make_account, make_certificate, unique
from tests.test_certificates_e2e import Fleet, fleet  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]


def test_concurrent_orders_through_the_agent(pebble, bind_server, fleet: Fleet) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    account = make_account(pebble)
    certs = [make_certificate([f"{unique('par')}.{bind_server.zone}"], account) for _ in range(12)]

    def renew(pk: int) -> str:
        try:
            result = renewal.renew_certificate(pk)
            return result.outcome + (f": {result.error}" if result.error else "")
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(renew, [c.pk for c in certs]))
    assert outcomes == ["issued"] * len(certs), outcomes
