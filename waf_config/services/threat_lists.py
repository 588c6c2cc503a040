"""Threat-feed block lists into gateway.yaml through the normal path (registered with integrations at startup).

integrations fetches, validates and merges the feeds; it calls ``propose`` (registered as its block-list proposer)
with the merged networks and the ones its previous proposal added. This takes the document's running version
(the newest deployed one, else the newest that is not rejected or rolled back), replaces in ``waf.ip_blacklist``
exactly the entries the previous proposal put there (the operator's own entries stay, in their order, first),
and creates a new version as the automation ``integrations.threat_feeds``: validated at once by the Gateway's own
rules; replay, approval by a person and deployment follow as for any other change. An unchanged list proposes
nothing (None).
"""

from __future__ import annotations

from typing import Any

from waf_config.gateway_config import GatewayConfig, dump_gateway_config, load_gateway_config
from waf_config.models import RuleSet, RuleSetKind, RuleSetVersion, VersionState
from waf_config.services.versions import create_version

PUBLISHER = "integrations.threat_feeds"


class BlocklistError(ValueError):
    """The named document cannot take a proposal (the message says why)."""


def _base_version(document: RuleSet) -> RuleSetVersion | None:
    versions = document.versions.order_by("-number")
    return (versions.filter(state=VersionState.DEPLOYED).first()
            or versions.exclude(state__in=[VersionState.REJECTED, VersionState.ROLLED_BACK]).first())


def propose(document_name: str, feed_entries: list[str], previous_entries: set[str]) -> Any:
    document = RuleSet.objects.filter(name=document_name, kind=RuleSetKind.GATEWAY_CONFIG).first()
    if document is None:
        raise BlocklistError(f"THREAT_FEED_CONFIG_DOCUMENT={document_name!r} names no gateway.yaml config document")
    base = _base_version(document)
    if base is None:
        raise BlocklistError(f"config document {document_name!r} has no version to build on; create one first")
    config = load_gateway_config(base.content).value
    current = list(config.document["waf"]["ip_blacklist"])
    operators = [entry for entry in current if entry not in previous_entries]
    wanted = operators + [entry for entry in feed_entries if entry not in set(operators)]
    if wanted == current:
        return None
    document_data = {**config.document, "waf": {**config.document["waf"], "ip_blacklist": wanted}}
    content = dump_gateway_config(GatewayConfig(document_data))
    return create_version(document, content, PUBLISHER,
                          comment=f"threat feeds: {len(feed_entries)} blocked networks "
                                  f"(was {len(previous_entries)}); operator entries kept: {len(operators)}")


def register() -> None:
    from integrations.services import register_blocklist_proposer

    register_blocklist_proposer(propose)
