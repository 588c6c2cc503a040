"""The labelled corpus through the whole pipeline (parse, store, correlate on Redis, incidents): recall 1.0 per
attack kind, no benign look-alike flagged, the split brute force caught only across instances."""

from __future__ import annotations

from collections import Counter

import pytest

from logpipeline import corpus
from logpipeline.correlation import Detection
from logpipeline.models import Incident, RequestLog, SecurityEvent
from logpipeline.services import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def lines() -> list[corpus.CorpusLine]:
    return corpus.generate(seed=7, benign_lines=20000)


def run(lines: list[corpus.CorpusLine], engine, store: bool = True) -> list[Detection]:
    found: list[Detection] = []
    for instance, fmt, group in corpus.batches(lines):
        result = ingest("file", instance, group, fmt, engine=engine, store=store)
        assert result.malformed == 0, result.samples[:3]
        found += result.detections
    return found


def test_corpus_is_seeded_and_labelled(lines) -> None:
    again = corpus.generate(seed=7, benign_lines=20000)
    assert [line.line for line in again] == [line.line for line in lines]
    labels = Counter(line.label for line in lines)
    assert {f"attack:{kind}" for kind in corpus.EXPECTED} <= set(labels)
    assert {f"benign:{name}" for name in corpus.LOOK_ALIKE_SUBJECTS} <= set(labels)
    assert {line.instance for line in lines} == set(corpus.INSTANCES)


def test_recall_per_attack_kind_and_no_look_alike_flagged(lines, detectors, make_engine) -> None:
    detections = run(lines, make_engine())
    found = {(d.event_type, d.subject) for d in detections}
    recall = {kind: expected in found for kind, expected in corpus.EXPECTED.items()}
    assert recall == {kind: True for kind in corpus.EXPECTED}, found

    expected_subjects = {subject for _, subject in corpus.EXPECTED.values()}
    false_positives = [(d.event_type, d.subject) for d in detections if d.subject not in expected_subjects]
    assert false_positives == []
    flagged_look_alikes = set(corpus.LOOK_ALIKE_SUBJECTS.values()) & {d.subject for d in detections}
    assert flagged_look_alikes == set()

    # stored for replay, and every detection is a security event in an incident with its evidence
    assert RequestLog.objects.count() == sum(1 for line in lines if line.fmt == "nginx-combined")
    assert set(RequestLog.objects.values_list("gateway_instance", flat=True).distinct()) == set(corpus.INSTANCES)
    detected = SecurityEvent.objects.exclude(detector="")
    assert detected.count() == len(detections) and not detected.filter(incident=None).exists()
    split = detected.get(event_type="login_bruteforce_split")
    instances = split.details["instances"]  # as counted when the sum crossed the threshold
    assert set(instances) == set(corpus.INSTANCES) and split.details["cross_instance"]
    assert sum(instances.values()) >= 10 and max(instances.values()) < 10
    incident = Incident.objects.get(subject="45.33.2.20")
    assert incident.gateway_instances == ["gw-1", "gw-2", "gw-3"] and incident.timeline.filter(
        kind="detection").exists()
    # the WAF text lines are stored as the Gateway's own security events
    assert SecurityEvent.objects.filter(detector="", event_type="waf_block", client_ip="77.88.1.2").count() == 15


def test_split_brute_force_is_caught_only_across_instances(lines, detectors, make_engine) -> None:
    split_ip = corpus.EXPECTED["login_bruteforce_split"][1]
    per_instance = Counter(line.instance for line in lines if line.label == "attack:login_bruteforce_split")
    threshold = 10  # the default login-bruteforce detector
    assert all(n < threshold for n in per_instance.values()) and sum(per_instance.values()) >= threshold

    for instance in corpus.INSTANCES:  # each instance alone, on its own windows: nothing about that IP
        alone = run([line for line in lines if line.instance == instance], make_engine(), store=False)
        assert not [d for d in alone if d.subject == split_ip], instance
        assert any(d.subject == "45.33.1.10" for d in alone) == (instance == "gw-1")  # the plain one still is

    together = run(lines, make_engine(), store=False)
    caught = [d for d in together if d.subject == split_ip]
    assert [d.event_type for d in caught] == ["login_bruteforce_split"]
    assert sum(caught[0].instances.values()) >= threshold > max(caught[0].instances.values())
    assert set(caught[0].instances) == set(corpus.INSTANCES)


def test_workers_sharing_the_windows_fire_once(lines, detectors, make_engine) -> None:
    """Two engines (two workers) on the same Redis prefix, fed alternate batches, still find each attack once."""
    first = make_engine()
    from logpipeline.correlation import Engine

    second = Engine(client=first.client, prefix=first.prefix)
    found: list[Detection] = []
    for n, (instance, fmt, group) in enumerate(corpus.batches(lines)):
        found += (first if n % 2 else second).process(_events(instance, fmt, group))
    counts = Counter((d.event_type, d.subject) for d in found)
    assert {key: counts[key] for key in corpus.EXPECTED.values()} == {key: 1 for key in corpus.EXPECTED.values()}


def _events(instance: str, fmt: str, group: list[str]):
    import time

    from logpipeline.events import ProxyTrust
    from logpipeline.parsers import Parser

    parser = Parser(instance, ProxyTrust([]), time.time())
    return [e for e in (parser.parse(line, fmt) for line in group) if e is not None]


def test_concurrent_workers_on_shared_windows_fire_each_attack_once(lines, detectors, make_engine) -> None:
    """Four threads (own Redis connections, same prefix) feed the batches at the same time: the Lua scripts keep
    the shared windows and the once-per-window firing right."""
    import queue
    import threading

    import redis
    from django.conf import settings

    from logpipeline.correlation import Engine
    from logpipeline.detectors import load_config

    prefix = make_engine().prefix
    config = load_config(fresh=True)  # read here: the threads have no database connection of their own
    work: queue.Queue = queue.Queue()
    for instance, fmt, group in corpus.batches(lines, size=500):
        work.put(_events(instance, fmt, group))
    found: list[Detection] = []
    errors: list[BaseException] = []

    def worker() -> None:
        engine = Engine(client=redis.Redis.from_url(settings.REDIS_URL), prefix=prefix, config=config)
        try:
            while True:
                try:
                    events = work.get_nowait()
                except queue.Empty:
                    return
                found.extend(engine.process(events))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    counts = Counter((d.event_type, d.subject) for d in found)
    assert {key: counts[key] for key in corpus.EXPECTED.values()} == {key: 1 for key in corpus.EXPECTED.values()}
    assert set(counts) == set(corpus.EXPECTED.values())
