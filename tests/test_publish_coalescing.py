"""request_publish: a burst of concurrent requests becomes few versions, and the last one holds every change."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from gateways import resources
from gateways.models import GatewayGroup, ResourceVersion
from gateways.resources import parse_payload
from gateways.services import register_resource, request_publish

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_requests_coalesce_without_losing_a_change() -> None:
    GatewayGroup.objects.get_or_create(name="default")
    saved = dict(resources._builders)
    saved_validators = dict(resources._validators)
    resources._validators.clear()  # push-plane tests use placeholder files, not real WAF rules
    tokens: list[dict[str, str]] = []
    lock = threading.Lock()
    builds = 0

    def build(group: Any) -> dict[str, Any]:
        nonlocal builds
        builds += 1
        time.sleep(0.02)  # a build that takes a while, as the full certificate set does
        with lock:
            return {"challenges": sorted(tokens, key=lambda t: t["token"])}

    register_resource("acme_challenges", build)
    try:
        def change(i: int) -> None:
            try:
                with lock:  # "commit" this change, then ask for a publish
                    tokens.append({"domain": f"d{i}.test", "token": f"tok{i}", "key_authorization": f"tok{i}.k"})
                request_publish("acme_challenges")
            finally:
                connection.close()

        threads = [threading.Thread(target=change, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        resources._builders.clear()
        resources._builders.update(saved)
        resources._validators.update(saved_validators)

    newest = ResourceVersion.objects.filter(resource_type="acme_challenges").order_by("-id").first()
    assert newest is not None
    assert 1 <= builds < 30, builds  # folded together: far fewer builds than requests
    held = parse_payload("acme_challenges", newest.payload)
    assert sorted(c.token for c in held.challenges) == sorted(f"tok{i}" for i in range(30))  # none lost
