"""The merged feed list to the WAF through waf_config's normal path: a new gateway.yaml version.

``propose_blocklist(document)`` takes the document's running version (the newest ``deployed`` one, else the newest
that is not rejected or rolled back), replaces in ``waf.ip_blacklist`` exactly the entries the previous proposal put
there (the operator's own entries stay, in their order, first), and calls ``waf_config.services.versions.
create_version`` as the automation ``integrations.threat_feeds``. The version is validated at once by the Gateway's
own rules; replay, approval by a person and deployment (canary, then fleet, pushed to the agents) follow as for any
other change. An unchanged list proposes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from integrations.feeds import PUBLISHER, FeedError, merged_blocklist
from integrations.models import ThreatListPublication

logger = logging.getLogger(__name__)


def _base_version(document: Any) -> Any:
    from waf_config.models import VersionState

    versions = document.versions.order_by("-number")
    return (versions.filter(state=VersionState.DEPLOYED).first()
            or versions.exclude(state__in=[VersionState.REJECTED, VersionState.ROLLED_BACK]).first())


def propose_blocklist(document_name: str) -> Any:
    """A new validated gateway.yaml version carrying the merged list, or None when nothing changed."""
    from waf_config.gateway_config import GatewayConfig, dump_gateway_config, load_gateway_config
    from waf_config.models import RuleSet, RuleSetKind
    from waf_config.services.versions import create_version

    document = RuleSet.objects.filter(name=document_name, kind=RuleSetKind.GATEWAY_CONFIG).first()
    if document is None:
        raise FeedError(f"THREAT_FEED_CONFIG_DOCUMENT={document_name!r} names no gateway.yaml config document")
    base = _base_version(document)
    if base is None:
        raise FeedError(f"config document {document_name!r} has no version to build on; create one first")
    blocklist = merged_blocklist()
    if len(blocklist) > settings.THREAT_FEED_MAX_ENTRIES:
        raise FeedError(f"merged list has {len(blocklist)} entries, more than THREAT_FEED_MAX_ENTRIES "
                        f"({settings.THREAT_FEED_MAX_ENTRIES}); narrow the feeds")
    feed_entries = [entry.network for entry in blocklist]
    previous = ThreatListPublication.objects.filter(document=document_name).first()
    previous_entries = set(previous.entries if previous else [])
    config = load_gateway_config(base.content).value
    current = list(config.document["waf"]["ip_blacklist"])
    operators = [entry for entry in current if entry not in previous_entries]
    wanted = operators + [entry for entry in feed_entries if entry not in set(operators)]
    if wanted == current:
        return None
    document_data = {**config.document, "waf": {**config.document["waf"], "ip_blacklist": wanted}}
    content = dump_gateway_config(GatewayConfig(document_data))
    with transaction.atomic():
        version = create_version(document, content, PUBLISHER,
                                 comment=f"threat feeds: {len(feed_entries)} blocked networks "
                                         f"(was {len(previous_entries)}); operator entries kept: {len(operators)}")
        ThreatListPublication.objects.create(
            document=document_name, entries=feed_entries, version_id=version.pk,
            sources={entry.network: entry.sources for entry in blocklist})
    logger.info("threat feeds: proposed %s version %s with %d feed entries", document_name, version.number,
                len(feed_entries))
    return version
