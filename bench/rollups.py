"""Benchmark: rollup throughput (events/s into minute sketches, merged into hour and day) on the log pipeline's
1,000,000-line corpus, against baselines that recompute the percentiles from the raw latencies, in the same run.

    python bench/rollups.py [--lines 1000000] [--seed 7] [--batch 5000] [--no-db]

The corpus is ``logpipeline/corpus.py`` scaled as ``bench/logs_correlate.py`` scales it (benign traffic at ~8.3
requests/s: ~33 hours over three instances), parsed by the pipeline's own parser; nginx combined carries no request
time, so each request gets the seeded latency ``tests/analytics_support.py`` gives it. Parsing is not timed.
Timed, one after the other, on the same events in the same batches:

- ``sketch_reduce``: ``analytics.rollups.reduce`` per batch — minute sketches (numpy keys), merged into hour and
  day sketches, counts; in memory, the CPU part of a rollup.
- ``sketch_postgres``: ``analytics.rollups.add_batch`` per batch into PostgreSQL (BENCH_ROLLUPS_DATABASE_URL,
  default ``gw_bench_rollups``, recreated): reduce + insert/lock/merge/update of the rows + the batch key.
- ``raw_incremental``: the same incremental rollup without sketches — keep every raw latency per minute, hour and
  day key, and after each batch recompute p50/p90/p99 (``numpy.percentile``) of every key the batch touched.
- ``raw_once``: the cheapest raw baseline — all values kept, percentiles of every minute, hour and day computed once
  at the end (not incremental: nothing is up to date until the end).

Also checked: the fleet day's p50/p90/p99 from merged sketches against the raw values (relative error). Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._db import recreate_database  # noqa: E402

DB_URL = os.environ.get("BENCH_ROLLUPS_DATABASE_URL",
                        "postgres://postgres:postgres@127.0.0.1:5432/gw_bench_rollups")


def setup_django(with_db: bool) -> None:
    os.environ["DATABASE_URL"] = DB_URL if with_db else "sqlite:///:memory:"
    os.environ.setdefault("WORKER_ENV", "test")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    import django

    if with_db:
        recreate_database(DB_URL)
    django.setup()
    if with_db:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def build_batches(lines_wanted: int, seed: int, batch: int) -> list[list]:
    from analytics.rollups import from_event
    from logpipeline import corpus
    from logpipeline.events import ProxyTrust
    from logpipeline.parsers import Parser
    from tests.analytics_support import latency_ms

    attack_lines = len(corpus.generate(seed=seed, benign_lines=0, with_waf_text=False))
    benign = max(0, lines_wanted - attack_lines)
    lines = corpus.generate(seed=seed, benign_lines=benign, duration=max(2400.0, benign / 8.3), with_waf_text=False)
    rng = random.Random(seed)
    parsers = {i: Parser(i, ProxyTrust([]), time.time()) for i in corpus.INSTANCES}
    batches = []
    for instance, fmt, group in corpus.batches(lines, batch):
        requests = []
        for line in group:
            event = parsers[instance].parse(line, fmt)
            if event is None:
                continue
            event.response_time_ms = latency_ms(rng, event.path, event.status or 200)
            request = from_event(event)
            if request is not None:
                requests.append(request)
        batches.append(requests)
    return batches


def run_reduce(batches: list[list]) -> dict[str, float]:
    from analytics.rollups import reduce

    start = time.perf_counter()
    keys = 0
    for requests in batches:
        keys += len(reduce(requests))
    return {"seconds": time.perf_counter() - start, "keys_written": keys}


def run_postgres(batches: list[list]) -> dict[str, float]:
    from analytics.models import TrafficRollup
    from analytics.rollups import add_batch

    start = time.perf_counter()
    for n, requests in enumerate(batches):
        add_batch(requests, key=f"bench:{n}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": TrafficRollup.objects.count()}


def _keys(r) -> tuple[tuple, tuple, tuple]:
    minute = int(r.ts // 60) * 60
    return (("minute", minute, r.instance, r.route), ("hour", minute // 3600 * 3600, r.instance, r.route),
            ("day", minute // 86400 * 86400, r.instance, r.route))


def run_raw_incremental(batches: list[list]) -> dict[str, float]:
    values: dict[tuple, list[float]] = {}
    start = time.perf_counter()
    computed = 0
    for requests in batches:
        touched = set()
        for r in requests:
            for key in _keys(r):
                values.setdefault(key, []).append(r.latency_ms)
                touched.add(key)
        for key in touched:
            np.percentile(values[key], (50, 90, 99))
            computed += 1
    return {"seconds": time.perf_counter() - start, "percentile_computations": computed}


def run_raw_once(batches: list[list]) -> dict[str, float]:
    values: dict[tuple, list[float]] = {}
    start = time.perf_counter()
    for requests in batches:
        for r in requests:
            for key in _keys(r):
                values.setdefault(key, []).append(r.latency_ms)
    for series in values.values():
        np.percentile(series, (50, 90, 99))
    return {"seconds": time.perf_counter() - start, "keys": len(values)}


def accuracy(batches: list[list]) -> dict[str, object]:
    """Fleet-wide p50/p90/p99 over the whole corpus: merged per-batch sketches vs the raw union."""
    from analytics import sketches
    from analytics.rollups import reduce

    merged = sketches.new_sketch()
    raw = []
    for requests in batches:
        for (gran, _, _, _), agg in reduce(requests).items():
            if gran == "day":
                merged.merge(agg.sketch)
        raw += [r.latency_ms for r in requests]
    ordered = np.sort(np.array(raw))
    out = {}
    for q, got in zip(sketches.QUANTILES, sketches.quantiles(merged), strict=True):
        want = float(ordered[int(math.floor(q * (len(ordered) - 1)))])
        out[f"p{round(q * 100)}"] = {"sketch_ms": round(got or 0, 3), "raw_ms": round(want, 3),
                                     "relative_error": round(abs((got or 0) - want) / want, 5)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--no-db", action="store_true", help="skip the PostgreSQL run")
    args = parser.parse_args()
    setup_django(not args.no_db)
    t = time.perf_counter()
    batches = build_batches(args.lines, args.seed, args.batch)
    events = sum(len(b) for b in batches)
    report: dict[str, object] = {"lines": args.lines, "request_events": events, "batches": len(batches),
                                 "prepare_seconds": round(time.perf_counter() - t, 1), "nproc": os.cpu_count(),
                                 "loadavg_before": os.getloadavg()[0]}
    runs = {"sketch_reduce": run_reduce, "raw_incremental": run_raw_incremental, "raw_once": run_raw_once}
    if not args.no_db:
        runs["sketch_postgres"] = run_postgres
    for name, run in runs.items():
        result = run(batches)
        result["events_per_second"] = round(events / result["seconds"])
        result["seconds"] = round(result["seconds"], 2)
        report[name] = result
        print(name, json.dumps(result), file=sys.stderr, flush=True)
    report["fleet_percentiles"] = accuracy(batches)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
