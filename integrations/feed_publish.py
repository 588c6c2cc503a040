"""The merged feed list to the WAF through its normal path: a new gateway.yaml version.

``propose_blocklist(document)`` merges the feeds and hands the networks (and the ones its previous proposal added)
to the block-list proposer the waf_config app registers (``waf_config.services.threat_lists``: it builds and
validates the new version; approval and deployment follow as for any other change), then records the
publication with its provenance. integrations imports no domain app: the arrow goes from waf_config to here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from integrations.feeds import FeedError, merged_blocklist
from integrations.models import ThreatListPublication

logger = logging.getLogger(__name__)


def propose_blocklist(document_name: str) -> Any:
    """A new validated gateway.yaml version carrying the merged list, or None when nothing changed."""
    from integrations.services import blocklist_proposer

    proposer = blocklist_proposer()
    if proposer is None:
        raise FeedError("no block-list proposer is registered (the waf_config app registers one at startup)")
    blocklist = merged_blocklist()
    if len(blocklist) > settings.THREAT_FEED_MAX_ENTRIES:
        raise FeedError(f"merged list has {len(blocklist)} entries, more than THREAT_FEED_MAX_ENTRIES "
                        f"({settings.THREAT_FEED_MAX_ENTRIES}); narrow the feeds")
    feed_entries = [entry.network for entry in blocklist]
    previous = ThreatListPublication.objects.filter(document=document_name).first()
    previous_entries = set(previous.entries if previous else [])
    with transaction.atomic():
        try:
            version = proposer(document_name, feed_entries, previous_entries)
        except ValueError as exc:
            raise FeedError(str(exc)) from exc
        if version is None:
            return None
        ThreatListPublication.objects.create(
            document=document_name, entries=feed_entries, version_id=version.pk,
            sources={entry.network: entry.sources for entry in blocklist})
    logger.info("threat feeds: proposed %s version %s with %d feed entries", document_name, version.number,
                len(feed_entries))
    return version
