"""Benchmark: replay 1,000,000 generated requests (seeded) through the Gateway pipeline against a generated
500-rule waf-rules.yaml, against a naive loop that tries every rule in order with Python's ``re``.

    python bench/replay_rules.py [--requests 1000000] [--rules 500] [--naive 20000] [--seed 15]

Single process (one core). Request generation is not timed; only evaluation is. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from waf_config.compiler import Policy, compile_policy  # noqa: E402
from waf_config.formats import RuleAction, RuleCondition, WafRule, WafRuleSet  # noqa: E402
from waf_config.gateway_config import WafSettings  # noqa: E402
from waf_config.replay import Evaluator  # noqa: E402
from waf_config.traffic import Request  # noqa: E402

WORDS = [f"w{i:03d}" for i in range(400)]
FIELDS = ["uri", "uri", "uri", "user_agent", "query.q", "query.id", "header.Referer", "header.X-Forwarded-For",
          "method", "content_type"]


def make_rules(count: int, rng: random.Random) -> WafRuleSet:
    rules = []
    for i in range(count):
        field = rng.choice(FIELDS)
        word, other = rng.sample(WORDS, 2)
        kind = rng.random()
        if kind < 0.55:
            cond = RuleCondition(field, "regex", rf"(?i)(?:{word}|{other})[-_=/]?\d{{2,}}", False)
        elif kind < 0.7:
            cond = RuleCondition(field, "contains", f"{word}x", rng.random() < 0.5)
        elif kind < 0.8:
            cond = RuleCondition(field, "starts_with", f"/{word}/", True)
        elif kind < 0.9:
            cond = RuleCondition(field, "ends_with", f".{word}", False)
        else:
            cond = RuleCondition("content_length", "greater_than", str(rng.randint(10**6, 10**8)), False)
        conditions = (cond,)
        if rng.random() < 0.15:
            conditions += (RuleCondition("method", "equals", rng.choice(["POST", "PUT"]), True),)
        action = "log" if rng.random() < 0.25 else "block"
        rules.append(WafRule(f"gen_{i:03d}", f"generated {i}", "", "medium", True, conditions,
                             RuleAction(action, f"generated rule {i}")))
    return WafRuleSet("1.0", tuple(rules))


def make_requests(count: int, rng: random.Random, start: int) -> list[Request]:
    out = []
    for n in range(start, start + count):
        attack = rng.random() < 0.03
        word = rng.choice(WORDS)
        path = f"/shop/{rng.choice(['items', 'cart', 'users', 'search'])}/{rng.randint(1, 99999)}"
        query = f"q=item{rng.randint(1, 999)}&id={rng.randint(1, 10**6)}"
        if attack:
            query = f"q={word}{rng.randint(10, 999)}&id=1"
        headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Accept": "text/html",
                   "Referer": f"https://example.com/page/{rng.randint(1, 500)}"}
        method = "POST" if rng.random() < 0.1 else "GET"
        out.append(Request(method=method, uri=f"{path}?{query}", headers=headers,
                           client_ip=f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}", timestamp=n * 0.001,
                           label="attack" if attack else "benign"))
    return out


def naive_verdict(rules: list[tuple[WafRule, list[tuple[str, object]]]], request: Request) -> str | None:
    """Every rule in order, each condition with Python's re or str methods: the loop we compare against."""
    for rule, conditions in rules:
        matched = True
        for field, test in conditions:
            value = request.field_value(field) or ""
            if not test(value):  # type: ignore[operator]
                matched = False
                break
        if matched and rule.action.action_type != "log":
            return rule.id
    return None


def naive_compile(rule_set: WafRuleSet) -> list[tuple[WafRule, list[tuple[str, object]]]]:
    compiled = []
    for rule in rule_set.rules:
        tests: list[tuple[str, object]] = []
        for c in rule.conditions:
            v = c.value
            if c.operator == "regex":
                tests.append((c.field, re.compile(v).search))
            elif c.operator == "greater_than":
                tests.append((c.field, lambda t, b=float(v): float(t) > b))
            elif c.case_sensitive:
                op = {"equals": str.__eq__, "contains": str.__contains__, "starts_with": str.startswith,
                      "ends_with": str.endswith}[c.operator]
                tests.append((c.field, lambda t, op=op, v=v: op(t, v)))
            else:
                op = {"equals": str.__eq__, "contains": str.__contains__, "starts_with": str.startswith,
                      "ends_with": str.endswith}[c.operator]
                tests.append((c.field, lambda t, op=op, v=v.lower(): op(t.lower(), v)))
        compiled.append((rule, tests))
    return compiled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--naive", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rule_set = make_rules(args.rules, rng)
    t0 = time.perf_counter()
    compiled = compile_policy(Policy(rule_set, (), WafSettings()))
    compile_secs = time.perf_counter() - t0
    evaluator = Evaluator(compiled)

    ours_secs, done, stopped, chunk = 0.0, 0, 0, 50_000
    sample: list[Request] = []
    verdicts: list[str | None] = []
    while done < args.requests:
        batch = make_requests(min(chunk, args.requests - done), rng, done)
        if not sample:
            sample = batch[: args.naive]
        start = time.perf_counter()
        for request in batch:
            verdict = evaluator.evaluate(request)
            if verdict.action != "allow":
                stopped += 1
        ours_secs += time.perf_counter() - start
        done += len(batch)

    # same first slice again, for the comparison (a fresh evaluator: rate-limiter state starts empty)
    check = Evaluator(compiled)
    verdicts = [check.evaluate(r).rule_id for r in sample]
    naive = naive_compile(rule_set)
    start = time.perf_counter()
    naive_ids = [naive_verdict(naive, r) for r in sample]
    naive_secs = time.perf_counter() - start
    agree = sum(a == b for a, b in zip(verdicts, naive_ids, strict=True))

    ours_rate = args.requests / ours_secs
    naive_rate = len(sample) / naive_secs
    print(json.dumps({
        "rules": args.rules, "requests": args.requests, "stopped": stopped, "compile_secs": round(compile_secs, 3),
        "probes": len(compiled.rules.probes), "ours_secs": round(ours_secs, 2),
        "ours_requests_per_sec": round(ours_rate), "naive_requests": len(sample),
        "naive_secs": round(naive_secs, 2), "naive_requests_per_sec": round(naive_rate),
        "speedup": round(ours_rate / naive_rate, 1), "verdicts_agree_on_naive_slice": f"{agree}/{len(sample)}",
    }, indent=2))
    if ours_rate < 20_000 or ours_rate < 10 * naive_rate or agree != len(sample):
        sys.exit(1)


if __name__ == "__main__":
    main()
