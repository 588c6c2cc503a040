"""Threat feeds served by a local HTTP server that records requests: conditional fetches, validation, provenance,
allow lists, and the merged list proposed to the WAF as a validated gateway.yaml version (waf_config's own path)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from integrations.feed_publish import propose_blocklist
from integrations.feeds import EntryRefused, fetch_all_and_publish, fetch_feed, merged_blocklist, validate_entry
from integrations.models import ThreatAllowEntry, ThreatFeed, ThreatIndicator, ThreatListPublication
from integrations.services import threat_feed_blocklist
from tests.integrations_support import Recorder
from waf_config.gateway_config import dump_gateway_config, load_gateway_config
from waf_config.models import RuleSet

pytestmark = pytest.mark.django_db

# the example as the Gateway reads it: durations as {secs, nanos} (the example's "30s" strings would be rejected)
EXAMPLE_GATEWAY_YAML = dump_gateway_config(load_gateway_config(
    (Path(__file__).parent / "test_waf_examples" / "gateway.yaml").read_text()).value)


def feed(receiver: Recorder, name: str = "spam", fmt: str = "text", path: str = "/feed",
         **fields: object) -> ThreatFeed:
    return ThreatFeed.objects.create(name=name, url=receiver.url(path), format=fmt, **fields)


def networks(f: ThreatFeed) -> dict[str, str]:
    return dict(ThreatIndicator.objects.filter(feed=f).values_list("network", "provenance"))


def test_second_fetch_with_an_unchanged_etag_transfers_nothing(receiver: Recorder) -> None:
    receiver.serve_feed("# bad hosts\n45.9.20.0/24\n185.220.101.7  # tor exit\n", etag='"abc"')
    f = feed(receiver)
    first = fetch_feed(f)
    assert (first.status, first.accepted, first.refused) == ("updated", 2, [])
    assert networks(f) == {"45.9.20.0/24": "line 2", "185.220.101.7/32": "line 3: tor exit"}

    f.refresh_from_db()
    assert f.etag == '"abc"' and f.last_status == "updated"
    second = fetch_feed(f)
    assert second.status == "not_modified"
    first_get, second_get = receiver.gets()
    assert "If-None-Match" not in first_get.headers and first_get.bytes_sent > 0
    assert second_get.headers["If-None-Match"] == '"abc"'
    assert (second_get.status, second_get.bytes_sent) == (304, 0), "nothing transferred"
    assert len(networks(f)) == 2

    receiver.serve_feed("45.9.20.0/24\n", etag='"def"')  # changed: an entry left the feed
    f.refresh_from_db()
    assert fetch_feed(f).status == "updated"
    assert list(networks(f)) == ["45.9.20.0/24"]


def test_if_modified_since_is_sent_back(receiver: Recorder) -> None:
    receiver.serve_feed("45.9.20.0/24\n", etag='"abc"')
    f = feed(receiver)
    fetch_feed(f)
    ThreatFeed.objects.filter(pk=f.pk).update(etag="")  # a server without ETags: only Last-Modified
    f.refresh_from_db()
    assert fetch_feed(f).status == "not_modified"
    assert receiver.gets()[1].headers["If-Modified-Since"] == receiver.feed_last_modified


def test_bogus_and_over_broad_entries_are_refused_with_a_clear_message(receiver: Recorder) -> None:
    receiver.serve_feed("\n".join(["0.0.0.0/0", "::/0", "45.0.0.0/4", "10.0.0.0/8", "127.0.0.1", "not-an-ip",
                                   "45.9.20.1/24", "224.0.0.1", "45.9.21.0/24"]) + "\n", etag='"x"')
    f = feed(receiver)
    result = fetch_feed(f)
    assert result.accepted == 1 and list(networks(f)) == ["45.9.21.0/24"]
    f.refresh_from_db()
    assert f.last_refused == result.refused and f.last_error == "8 entries refused"
    assert result.refused == [
        "line 1: '0.0.0.0/0' is over-broad: /0 covers 4294967296 addresses (feeds may list IPv4 networks of /8 "
        "or narrower)",
        "line 2: '::/0' is over-broad: /0 covers 340282366920938463463374607431768211456 addresses (feeds may list "
        "IPv6 networks of /19 or narrower)",
        "line 3: '45.0.0.0/4' has host bits set (did the feed mean 32.0.0.0/4?)",
        "line 4: '10.0.0.0/8' is private address space; this feed does not allow private entries (allow_private)",
        "line 5: '127.0.0.1' is loopback address space; this feed does not allow private entries (allow_private)",
        "line 6: 'not-an-ip' is not an IP address or CIDR network",
        "line 7: '45.9.20.1/24' has host bits set (did the feed mean 45.9.20.0/24?)",
        "line 8: '224.0.0.1' is multicast address space, never a traffic source",
    ]
    with pytest.raises(EntryRefused, match="over-broad"):
        validate_entry("32.0.0.0/4")
    assert str(validate_entry("10.1.0.0/16", allow_private=True)) == "10.1.0.0/16"


def test_drop_csv_and_json_formats_keep_provenance(receiver: Recorder) -> None:
    receiver.serve_feed("; Spamhaus DROP List 2026/11/30\n; Last-Modified: Mon, 30 Nov 2026\n"
                        "1.10.16.0/20 ; SBL256894\n2.56.192.0/22 ; SBL459831\n", etag='"d"')
    drop = feed(receiver, "drop", "drop")
    fetch_feed(drop)
    assert networks(drop) == {"1.10.16.0/20": "line 3: SBL256894", "2.56.192.0/22": "line 4: SBL459831"}

    receiver.serve_feed("first_seen,ip_address,malware\n2026-11-29,45.95.147.236,Mirai\n"
                        "2026-11-30,bogus,Emotet\n", etag='"c"')
    csv_feed = feed(receiver, "csv", "csv")
    result = fetch_feed(csv_feed)
    assert networks(csv_feed) == {"45.95.147.236/32": "line 2: 2026-11-29, Mirai"}
    assert result.refused == ["line 3: 2026-11-30, Emotet: 'bogus' is not an IP address or CIDR network"]

    receiver.serve_feed(json.dumps({"data": [{"ip": "2a0e:1c80::/32", "reason": "scanner"}, "91.92.240.0/24",
                                             {"cidr": "0.0.0.0/0"}]}), etag='"j"')
    json_feed = feed(receiver, "json", "json")
    result = fetch_feed(json_feed)
    assert networks(json_feed) == {"2a0e:1c80::/32": "item 0: scanner", "91.92.240.0/24": "item 1"}
    assert result.refused[0].startswith("item 2: '0.0.0.0/0' is over-broad")


def test_a_broken_feed_keeps_its_previous_entries(receiver: Recorder) -> None:
    receiver.serve_feed(json.dumps(["45.9.20.0/24"]), etag='"1"')
    f = feed(receiver, fmt="json")
    fetch_feed(f)
    receiver.serve_feed("{not json", etag='"2"')
    f.refresh_from_db()
    result = fetch_feed(f)
    assert result.status == "failed" and result.error.startswith("not JSON")
    assert list(networks(f)) == ["45.9.20.0/24"]


def test_merge_with_provenance_and_allow_lists_that_always_win(receiver: Recorder) -> None:
    receiver.serve_feed("45.10.0.0/24\n45.10.0.128/25\n185.220.101.7\n", etag='"a"')
    fetch_feed(feed(receiver, "a", path="/a"))
    receiver.serve_feed("45.10.0.5\n185.220.101.7\n91.92.240.0/24\n", etag='"b"')
    fetch_feed(feed(receiver, "b", path="/b"))
    ThreatAllowEntry.objects.create(network="45.10.0.7", reason="our monitoring probe")
    ThreatAllowEntry.objects.create(network="91.92.240.0/23", reason="a partner")

    merged = merged_blocklist()
    blocked = [ipaddress.ip_network(e.network) for e in merged]
    assert not any(ipaddress.ip_address("45.10.0.7") in n for n in blocked), "the allowed address is cut out"
    assert any(ipaddress.ip_address("45.10.0.8") in n for n in blocked), "the rest of the /24 stays blocked"
    assert not any(n.overlaps(ipaddress.ip_network("91.92.240.0/23")) for n in blocked)
    covered = sum(n.num_addresses for n in blocked if n.subnet_of(ipaddress.ip_network("45.10.0.0/24")))
    assert covered == 255
    sources = {ipaddress.ip_network(e.network): e.sources for e in merged}
    assert sources[ipaddress.ip_network("185.220.101.7")] == ["a", "b"]
    assert all(sources[n] == ["a", "b"] for n in blocked if n.subnet_of(ipaddress.ip_network("45.10.0.0/24")))
    assert threat_feed_blocklist() == [e.network for e in merged]

    ThreatFeed.objects.filter(name="b").update(enabled=False)
    assert "185.220.101.7" in threat_feed_blocklist() and "91.92.240.0/24" not in threat_feed_blocklist()


def test_merged_list_is_proposed_as_a_validated_gateway_yaml_version(receiver: Recorder, settings) -> None:
    from waf_config.services.versions import create_version

    document = RuleSet.objects.create(name="gateway", kind="gateway_config")
    create_version(document, EXAMPLE_GATEWAY_YAML, "tests")
    receiver.serve_feed("45.9.20.0/24\n185.220.101.7\n", etag='"1"')
    feed(receiver)
    settings.THREAT_FEED_CONFIG_DOCUMENT = "gateway"

    outcome = fetch_all_and_publish()  # what the beat job runs
    assert outcome["feeds"] == {"spam": {"status": "updated", "accepted": 2, "refused": 0}}
    version = document.versions.get(pk=outcome["proposed_version"])
    assert version.state == "validated" and version.validation_status == "valid"
    assert version.comment.startswith("threat feeds: 2 blocked networks")
    waf = load_gateway_config(version.content).value.waf
    assert waf.ip_blacklist == ("192.168.1.100", "10.0.0.0/8", "45.9.20.0/24", "185.220.101.7"), \
        "the operator's entries first, then the feeds'"
    publication = ThreatListPublication.objects.get()
    assert publication.version_id == version.pk and publication.sources["45.9.20.0/24"] == ["spam"]

    assert fetch_all_and_publish()["proposed_version"] is None, "unchanged (304): nothing proposed"
    assert receiver.gets()[-1].status == 304

    # the feed changes; the next proposal replaces the feeds' entries and keeps the operator's. It builds on the
    # running version (none deployed here: the newest one not rejected, the previous proposal).
    receiver.serve_feed("91.92.240.0/24\n", etag='"2"')
    second = propose_after_fetch()
    waf = load_gateway_config(second.content).value.waf
    assert waf.ip_blacklist == ("192.168.1.100", "10.0.0.0/8", "91.92.240.0/24")


def propose_after_fetch():  # type: ignore[no-untyped-def]
    for f in ThreatFeed.objects.all():
        fetch_feed(f)
    return propose_blocklist("gateway")


def test_a_missing_document_is_a_clear_error() -> None:
    from integrations.feeds import FeedError

    with pytest.raises(FeedError, match="names no gateway.yaml config document"):
        propose_blocklist("nope")
