"""The correlation engine: sliding windows over every Gateway instance, kept in Redis so several workers share them.

A batch of events is first reduced in the process to increments per (detector, subject, time bucket); one Lua
script then applies every increment and returns each window's sum, atomically, in one round trip. Windows are in
*event* time (bucketed by the event's timestamp, tenths of the window), so a replayed or imported log is judged as
it happened. A second script decides which crossed thresholds fire: a detector fires once per subject per window
(the bucket it fired in is stored), so two workers crossing the same threshold at once report it once.

Redis keys (``prefix`` defaults to ``lp:``, tests use their own):

- ``<prefix>c:<detector>:<subject>``: hash ``bucket -> count`` (and ``bucket|instance -> count`` for login brute
  force, so a split attack is told apart); buckets older than the window and baseline are removed as it slides;
- ``<prefix>d:<detector>:<subject>:<bucket>``: HyperLogLog of distinct IPs (distributed probing);
- ``<prefix>f:<detector>:<subject>``: the bucket it last fired in.

Every key expires a little after its window, so an idle subject costs nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from logpipeline.detectors import Config, DetectorConfig, is_sensitive_path, load_config, payload_class
from logpipeline.events import LogEvent

# One group per (detector, subject) key, its increments for every bucket the batch touched (ascending). Each
# group returns only the buckets whose window crossed the group's threshold, so a quiet batch returns little.
#   c: key, win, base, ttl, thr, "bucket incr,..."                -> {{b, cur, prev}, ...}  (prev: baseline span)
#   e: key, win, ttl, thr, "bucket errors total,..."              -> {{b, errors, total}, ...}
#   i: key, win, ttl, thr, m, m x (bucket, instance, incr)        -> {{b, cur, busiest, "inst=n,..."}, ...}
#   d: prefix, win, ttl, thr, m, m x (bucket, k, k x member)      -> {{b, distinct}, ...}
_APPLY = """
local out = {}
local i = 2
local function window(t, b, from, to)
  local s = 0
  for x = b - to + 1, b - from do s = s + (t[x] or 0) end
  return s
end
for g = 1, tonumber(ARGV[1]) do
  local kind, key = ARGV[i], ARGV[i+1]
  local res = {}
  if kind == 'c' or kind == 'e' then
    local win, base, ttl, thr, cells
    if kind == 'c' then
      win, base, ttl, thr, cells = tonumber(ARGV[i+2]), tonumber(ARGV[i+3]), ARGV[i+4], tonumber(ARGV[i+5]), ARGV[i+6]
      i = i + 7
    else
      win, base, ttl, thr, cells = tonumber(ARGV[i+2]), 0, ARGV[i+3], tonumber(ARGV[i+4]), ARGV[i+5]
      i = i + 6
    end
    local buckets = {}
    if kind == 'c' then
      for b, n in string.gmatch(cells, '(%-?%d+) (%d+)') do
        buckets[#buckets + 1] = tonumber(b)
        redis.call('HINCRBY', key, b, n)
      end
    else
      for b, e, n in string.gmatch(cells, '(%-?%d+) (%d+) (%d+)') do
        buckets[#buckets + 1] = tonumber(b)
        if e ~= '0' then redis.call('HINCRBY', key, b, e) end
        redis.call('HINCRBY', key, 't' .. b, n)
      end
    end
    redis.call('EXPIRE', key, ttl)
    local first = buckets[1]
    local vals = redis.call('HGETALL', key)
    local t, tot = {}, {}
    for x = 1, #vals, 2 do
      local f = vals[x]
      local total = string.sub(f, 1, 1) == 't'
      local fb = tonumber(total and string.sub(f, 2) or f)
      if fb <= first - win - base - 2 then redis.call('HDEL', key, f)
      elseif total then tot[fb] = tonumber(vals[x+1])
      else t[fb] = tonumber(vals[x+1]) end
    end
    for _, b in ipairs(buckets) do
      local cur = window(t, b, 0, win)
      if cur >= thr then
        if kind == 'c' then res[#res + 1] = {b, cur, base > 0 and window(t, b, win, win + base) or 0}
        else res[#res + 1] = {b, cur, window(tot, b, 0, win)} end
      end
    end
  elseif kind == 'i' then
    local win, ttl, thr, m = tonumber(ARGV[i+2]), ARGV[i+3], tonumber(ARGV[i+4]), tonumber(ARGV[i+5])
    local j = i + 6
    local buckets = {}
    for n = 0, m - 1 do
      local b, inst, incr = ARGV[j + n * 3], ARGV[j + n * 3 + 1], ARGV[j + n * 3 + 2]
      buckets[#buckets + 1] = tonumber(b)
      redis.call('HINCRBY', key, b, incr)
      redis.call('HINCRBY', key, b .. '|' .. inst, incr)
    end
    redis.call('EXPIRE', key, ttl)
    local vals = redis.call('HGETALL', key)
    for _, b in ipairs(buckets) do
      local cur, per = 0, {}
      for x = 1, #vals, 2 do
        local f, c = vals[x], tonumber(vals[x+1])
        local bar = string.find(f, '|', 1, true)
        local fb = tonumber(bar and string.sub(f, 1, bar - 1) or f)
        if fb > b - win and fb <= b then
          if bar then
            local name = string.sub(f, bar + 1)
            per[name] = (per[name] or 0) + c
          else cur = cur + c end
        end
      end
      if cur >= thr then
        local top, parts = 0, {}
        for name, c in pairs(per) do
          if c > top then top = c end
          parts[#parts + 1] = name .. '=' .. c
        end
        res[#res + 1] = {b, cur, top, table.concat(parts, ',')}
      end
    end
    i = j + m * 3
  else
    local win, ttl, thr, m = tonumber(ARGV[i+2]), ARGV[i+3], tonumber(ARGV[i+4]), tonumber(ARGV[i+5])
    local j = i + 6
    for n = 1, m do
      local b, k = tonumber(ARGV[j]), tonumber(ARGV[j+1])
      local hll = key .. ':' .. b
      redis.call('PFADD', hll, unpack(ARGV, j + 2, j + 1 + k))
      redis.call('EXPIRE', hll, ttl)
      local keys = {}
      for fb = b - win + 1, b do keys[#keys + 1] = key .. ':' .. fb end
      local distinct = redis.call('PFCOUNT', unpack(keys))
      if distinct >= thr then res[#res + 1] = {b, distinct} end
      j = j + 2 + k
    end
    i = j
  end
  out[g] = res
end
return out
"""

# ARGV: n, then n groups of key, bucket, win, ttl -> 1 when this call fires it (not fired within the window).
_FIRE = """
local out = {}
for g = 1, tonumber(ARGV[1]) do
  local k = 2 + (g - 1) * 4
  local key, b, win, ttl = ARGV[k], tonumber(ARGV[k+1]), tonumber(ARGV[k+2]), ARGV[k+3]
  local last = redis.call('GET', key)
  if (not last) or b >= tonumber(last) + win or b < tonumber(last) - win then
    redis.call('SET', key, b, 'EX', ttl)
    out[g] = 1
  else out[g] = 0 end
end
return out
"""

SAMPLES_PER_SUBJECT = 5
NOT_FOUND_ROUTE = "<404>"  # 404s share one route: probes for random paths must not mint a counter each


@dataclass
class Detection:
    detector: str
    kind: str
    event_type: str
    subject: str
    subject_kind: str  # ip | network | route
    count: int
    threshold: int
    window_seconds: int
    severity: str
    first_ts: float
    last_ts: float
    instances: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Evidence:
    instances: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    first_ts: float = float("inf")
    last_ts: float = 0.0

    def add(self, event: LogEvent) -> None:
        self.instances[event.instance] += 1
        if event.ts < self.first_ts:
            self.first_ts = event.ts
        if event.ts > self.last_ts:
            self.last_ts = event.ts
        if len(self.samples) < SAMPLES_PER_SUBJECT:
            what = event.message if event.kind == "security" else f"{event.method} {event.uri[:200]} {event.status}"
            self.samples.append(f"{event.instance} {event.client_ip or '-'} {what}")


@dataclass
class _Batch:
    """A batch reduced in the process: increments per (detector, subject) and bucket, and the evidence."""

    counts: defaultdict[tuple[DetectorConfig, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter))
    ratios: defaultdict[tuple[DetectorConfig, str], defaultdict[int, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: [0, 0])))
    per_instance: defaultdict[tuple[DetectorConfig, str], Counter[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(Counter))
    distinct: defaultdict[tuple[DetectorConfig, str], defaultdict[int, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    evidence: defaultdict[tuple[str, str], _Evidence] = field(default_factory=lambda: defaultdict(_Evidence))


class Engine:
    """Feeds batches of events to the detectors; returns the detections that fired in this batch."""

    def __init__(self, client: redis.Redis | None = None, prefix: str | None = None,
                 config: Config | None = None) -> None:
        self.client = client or redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10)
        self.prefix = prefix if prefix is not None else settings.LOG_CORRELATION_PREFIX
        self.fixed_config = config
        self._apply = self.client.register_script(_APPLY)
        self._fire = self.client.register_script(_FIRE)

    def process(self, events: list[LogEvent]) -> list[Detection]:
        config = self.fixed_config or load_config()
        if not config.detectors or not events:
            return []
        batch = _Batch()
        self._count(config, events, batch)
        return self._evaluate(batch)

    # --- reduce a batch in the process --------------------------------------------------------------------------

    def _count(self, config: Config, events: list[LogEvent], batch: _Batch) -> None:
        logins = config.by_kind("login_bruteforce")
        probing = config.by_kind("path_probing")
        payloads = {d.params.get("class"): d for d in config.by_kind("payload")}
        networks = config.by_kind("distributed_probing")
        agents = config.by_kind("bad_user_agent")
        blocks = config.by_kind("waf_block_burst")
        errors = config.by_kind("error_rate")
        spikes = config.by_kind("traffic_spike")
        login_methods = {m.upper() for d in logins for m in d.params.get("methods", ["POST"])}
        login_statuses = {int(s) for d in logins for s in d.params.get("statuses", [401, 403])}
        login_paths = config.login_paths
        allowed = config.allowed
        counts, per_instance, distinct, ratios = batch.counts, batch.per_instance, batch.distinct, batch.ratios
        evidence = batch.evidence
        width = {id(d): d.bucket_seconds for d in config.detectors}

        def hit(det: DetectorConfig, subject: str, event: LogEvent) -> None:
            # per-IP detectors count rare events: per instance too, so the evidence spans the whole window
            per_instance[(det, subject)][(int(event.ts) // width[id(det)], event.instance)] += 1
            evidence[(det.name, subject)].add(event)

        for event in events:
            ip = event.client_ip
            is_allowed = ip is not None and allowed(ip)
            if event.kind == "security":
                if event.event_type == "waf_block" and not is_allowed:
                    for det in blocks:
                        hit(det, ip or "-", event)
                continue
            status = event.status or 0
            if spikes or errors:  # per route, allow-listed clients too: a spike is a spike
                route = NOT_FOUND_ROUTE if status == 404 else (event.route or "/")
                for det in spikes:
                    counts[(det, route)][int(event.ts) // width[id(det)]] += 1
                for det in errors:
                    cell = ratios[(det, route)][int(event.ts) // width[id(det)]]
                    cell[1] += 1
                    if status >= 500:
                        cell[0] += 1
                        evidence[(det.name, route)].add(event)
            if ip is None or is_allowed:
                continue
            if event.waf_action == "block":
                for det in blocks:
                    hit(det, ip, event)
            if logins and status in login_statuses and event.method in login_methods and login_paths.search(
                    event.path):
                for det in logins:
                    per_instance[(det, ip)][(int(event.ts) // width[id(det)], event.instance)] += 1
                    evidence[(det.name, ip)].add(event)
            probe = False
            if is_sensitive_path(event.path):
                probe = True
                if status >= 400:
                    for det in probing:
                        hit(det, ip, event)
            if payloads:
                klass = payload_class(event.uri)
                if klass is not None:
                    probe = True
                    det_p = payloads.get(klass)
                    if det_p is not None:
                        hit(det_p, ip, event)
            if probe and networks:
                for det in networks:
                    bucket = int(event.ts) // width[id(det)]
                    counts[(det, event.network)][bucket] += 1
                    distinct[(det, event.network)][bucket].add(ip)
                    evidence[(det.name, event.network)].add(event)
            if event.ua_class == "scanner":
                for det in agents:
                    hit(det, ip, event)

    # --- apply to Redis, read windows, fire ---------------------------------------------------------------------

    def _evaluate(self, batch: _Batch) -> list[Detection]:
        args: list[Any] = []
        groups: list[tuple[str, DetectorConfig, str]] = []
        p = self.prefix

        def ttl(det: DetectorConfig, extra_buckets: int = 0) -> int:
            return (det.window_buckets + extra_buckets + 2) * det.bucket_seconds + 60

        for (det, subject), cells in batch.counts.items():
            base = det.window_buckets * int(det.params.get("baseline_windows", 0)) if det.kind == "traffic_spike" else 0
            thr = int(det.params.get("min_requests", 0)) if det.kind == "distributed_probing" else det.threshold
            packed = ",".join(f"{bucket} {cells[bucket]}" for bucket in sorted(cells))  # one argument, not 2 per cell
            args += ["c", f"{p}c:{det.name}:{subject}", det.window_buckets, base, ttl(det, base), thr, packed]
            groups.append(("c", det, subject))
        for (det, subject), ratio_cells in batch.ratios.items():
            packed = ",".join(f"{bucket} {ratio_cells[bucket][0]} {ratio_cells[bucket][1]}"
                              for bucket in sorted(ratio_cells))
            args += ["e", f"{p}e:{det.name}:{subject}", det.window_buckets, ttl(det), det.threshold, packed]
            groups.append(("e", det, subject))
        for (det, subject), instance_cells in batch.per_instance.items():
            args += ["i", f"{p}c:{det.name}:{subject}", det.window_buckets, ttl(det), det.threshold,
                     len(instance_cells)]
            for (bucket, instance), n in sorted(instance_cells.items()):
                args += [bucket, instance, n]
            groups.append(("i", det, subject))
        for (det, subject), sets in batch.distinct.items():
            args += ["d", f"{p}d:{det.name}:{subject}", det.window_buckets, ttl(det), det.threshold, len(sets)]
            for bucket in sorted(sets):
                args += [bucket, len(sets[bucket]), *sets[bucket]]
            groups.append(("d", det, subject))
        if not groups:
            return []
        results = self._apply(args=[len(groups), *args])
        crossed: dict[tuple[str, DetectorConfig, str], list[list[Any]]] = {
            group: result for group, result in zip(groups, results, strict=True) if result}

        candidates: dict[tuple[str, str], tuple[Detection, DetectorConfig, int]] = {}
        for (kind, det, subject), rows in crossed.items():
            for row in rows:  # time-ordered: the first crossing bucket of the batch is reported
                detection = self._judge(kind, det, subject, row, crossed)
                if detection is not None:
                    candidates.setdefault((det.name, subject), (detection, det, int(row[0])))
                    break
        if not candidates:
            return []
        fire_args: list[Any] = []
        keys = list(candidates)
        for key in keys:
            _, det, bucket = candidates[key]
            fire_args += [f"{p}f:{key[0]}:{key[1]}", bucket, det.window_buckets, ttl(det)]
        fired = self._fire(args=[len(keys), *fire_args])
        detections = []
        for key, flag in zip(keys, fired, strict=True):
            if int(flag):
                detection = candidates[key][0]
                ev = batch.evidence.get(key)
                if ev is not None:
                    detection.instances = detection.instances or dict(ev.instances)
                    detection.samples = ev.samples
                    detection.first_ts, detection.last_ts = ev.first_ts, ev.last_ts
                detections.append(detection)
        return detections

    def _judge(self, kind: str, det: DetectorConfig, subject: str, row: list[Any],
               crossed: dict[tuple[str, DetectorConfig, str], list[list[Any]]]) -> Detection | None:
        def make(event_type: str, subject_kind: str, count: int, **extra: Any) -> Detection:
            return Detection(detector=det.name, kind=det.kind, event_type=event_type, subject=subject,
                             subject_kind=subject_kind, count=count, threshold=det.threshold,
                             window_seconds=det.window_seconds, severity=det.severity, first_ts=0.0, last_ts=0.0,
                             extra=extra)

        bucket, cur = int(row[0]), int(row[1])
        if kind == "i":  # per IP: the total across instances, and the busiest instance alone
            top = int(row[2])
            per = {name: int(n) for name, n in (part.split("=", 1) for part in _text(row[3]).split(",") if "=" in part)}
            if det.kind == "login_bruteforce":
                split = top < det.threshold
                detection = make("login_bruteforce_split" if split else "login_bruteforce", "ip", cur,
                                 cross_instance=split, busiest_instance_count=top)
            else:
                detection = make(self._event_type(det), "ip" if subject != "-" else "fleet", cur)
            detection.instances = per
            return detection
        if kind == "d":  # distinct addresses crossed; the network's probes must be enough too
            probes = {int(r[0]): int(r[1]) for r in crossed.get(("c", det, subject), [])}
            if bucket not in probes:
                return None
            return make("distributed_probing", "network", probes[bucket], distinct_ips=cur)
        if det.kind == "distributed_probing":
            return None  # the count half, judged with the distinct half
        if kind == "e":
            requests = int(row[2])
            if cur < float(det.params.get("ratio", 0.5)) * requests:
                return None
            return make("error_rate_spike", "route", cur, requests=requests)
        if det.kind == "traffic_spike":
            base_windows = int(det.params.get("baseline_windows", 0))
            mean = int(row[2]) / base_windows if base_windows else 0.0
            if cur < float(det.params.get("factor", 5)) * mean:
                return None
            return make("traffic_spike", "route", cur, baseline_mean=round(mean, 1))
        return None

    @staticmethod
    def _event_type(det: DetectorConfig) -> str:
        if det.kind == "payload":
            return f"{det.params.get('class', 'payload')}_probing"
        return det.kind


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
