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

# ARGV: n, then n groups. Group "c": key, bucket, incr, win, base, ttl -> {cur, prev}.
# Group "i" (per instance too): key, bucket, incr, win, ttl, instance -> {cur, max_instance, "inst=n,..."}.
# Group "d" (distinct): prefix, bucket, win, ttl, m, members... -> {distinct}.
_APPLY = """
local out = {}
local i = 2
for g = 1, tonumber(ARGV[1]) do
  local kind = ARGV[i]
  if kind == 'c' then
    local key, b, incr = ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
    local win, base, ttl = tonumber(ARGV[i+4]), tonumber(ARGV[i+5]), tonumber(ARGV[i+6])
    if incr > 0 then redis.call('HINCRBY', key, b, incr) end
    redis.call('EXPIRE', key, ttl)
    local vals = redis.call('HGETALL', key)
    local cur, prev = 0, 0
    for j = 1, #vals, 2 do
      local fb, c = tonumber(vals[j]), tonumber(vals[j+1])
      if fb > b - win and fb <= b then cur = cur + c
      elseif fb > b - win - base and fb <= b - win then prev = prev + c
      elseif fb <= b - win - base then redis.call('HDEL', key, vals[j]) end
    end
    out[g] = {cur, prev}
    i = i + 7
  elseif kind == 'i' then
    local key, b, incr = ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
    local win, ttl, inst = tonumber(ARGV[i+4]), tonumber(ARGV[i+5]), ARGV[i+6]
    redis.call('HINCRBY', key, b, incr)
    redis.call('HINCRBY', key, b .. '|' .. inst, incr)
    redis.call('EXPIRE', key, ttl)
    local vals = redis.call('HGETALL', key)
    local cur, per = 0, {}
    for j = 1, #vals, 2 do
      local f, c = vals[j], tonumber(vals[j+1])
      local bar = string.find(f, '|', 1, true)
      local fb = tonumber(bar and string.sub(f, 1, bar - 1) or f)
      if fb > b - win and fb <= b then
        if bar then
          local name = string.sub(f, bar + 1)
          per[name] = (per[name] or 0) + c
        else cur = cur + c end
      elseif fb <= b - win then redis.call('HDEL', key, f) end
    end
    local top, parts = 0, {}
    for name, c in pairs(per) do
      if c > top then top = c end
      parts[#parts + 1] = name .. '=' .. c
    end
    out[g] = {cur, top, table.concat(parts, ',')}
    i = i + 7
  else
    local prefix, b, win, ttl, m = ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3]), tonumber(ARGV[i+4]),
      tonumber(ARGV[i+5])
    local key = prefix .. ':' .. b
    redis.call('PFADD', key, unpack(ARGV, i + 6, i + 5 + m))
    redis.call('EXPIRE', key, ttl)
    local keys = {}
    for fb = b - win + 1, b do keys[#keys + 1] = prefix .. ':' .. fb end
    out[g] = {redis.call('PFCOUNT', unpack(keys))}
    i = i + 6 + m
  end
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
        counts: Counter[tuple[DetectorConfig, str, int]] = Counter()
        per_instance: Counter[tuple[DetectorConfig, str, int, str]] = Counter()
        distinct: dict[tuple[DetectorConfig, str, int], set[str]] = defaultdict(set)
        evidence: dict[tuple[str, str], _Evidence] = defaultdict(_Evidence)
        self._count(config, events, counts, per_instance, distinct, evidence)
        return self._evaluate(counts, per_instance, distinct, evidence)

    # --- reduce a batch in the process --------------------------------------------------------------------------

    def _count(self, config: Config, events: list[LogEvent], counts: Counter[Any], per_instance: Counter[Any],
               distinct: dict[Any, set[str]], evidence: dict[tuple[str, str], _Evidence]) -> None:
        logins = config.by_kind("login_bruteforce")
        probing = config.by_kind("path_probing")
        payloads = {d.params.get("class"): d for d in config.by_kind("payload")}
        networks = config.by_kind("distributed_probing")
        agents = config.by_kind("bad_user_agent")
        blocks = config.by_kind("waf_block_burst")
        routes = config.by_kind("error_rate") + config.by_kind("traffic_spike")
        login_methods = {m.upper() for d in logins for m in d.params.get("methods", ["POST"])}
        login_statuses = {int(s) for d in logins for s in d.params.get("statuses", [401, 403])}
        login_paths = config.login_paths
        allowed = config.allowed

        def hit(det: DetectorConfig, subject: str, event: LogEvent, n: int = 1) -> None:
            counts[(det, subject, int(event.ts) // det.bucket_seconds)] += n
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
            for det in routes:  # per route, allow-listed clients too: a spike is a spike
                route = NOT_FOUND_ROUTE if status == 404 else (event.route or "/")
                if det.kind == "traffic_spike":
                    counts[(det, route, int(event.ts) // det.bucket_seconds)] += 1
                else:
                    bucket = int(event.ts) // det.bucket_seconds
                    counts[(det, route + "\x00all", bucket)] += 1
                    if status >= 500:
                        hit(det, route, event)
            if ip is None or is_allowed:
                continue
            if event.waf_action == "block":
                for det in blocks:
                    hit(det, ip, event)
            if logins and status in login_statuses and event.method in login_methods and login_paths.search(
                    event.path):
                for det in logins:
                    bucket = int(event.ts) // det.bucket_seconds
                    per_instance[(det, ip, bucket, event.instance)] += 1
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
                    bucket = int(event.ts) // det.bucket_seconds
                    counts[(det, event.network, bucket)] += 1
                    distinct[(det, event.network, bucket)].add(ip)
                    evidence[(det.name, event.network)].add(event)
            if event.ua_class == "scanner":
                for det in agents:
                    hit(det, ip, event)

    # --- apply to Redis, read windows, fire ---------------------------------------------------------------------

    def _evaluate(self, counts: Counter[Any], per_instance: Counter[Any], distinct: dict[Any, set[str]],
                  evidence: dict[tuple[str, str], _Evidence]) -> list[Detection]:
        args: list[Any] = []
        groups: list[tuple[str, DetectorConfig, str, int]] = []
        p = self.prefix
        for (det, subject, bucket), n in sorted(counts.items(), key=lambda kv: kv[0][2]):
            base = det.window_buckets * int(det.params.get("baseline_windows", 0)) if det.kind == "traffic_spike" else 0
            ttl = (det.window_buckets + base + 2) * det.bucket_seconds + 60
            args += ["c", f"{p}c:{det.name}:{subject}", bucket, n, det.window_buckets, base, ttl]
            groups.append(("c", det, subject, bucket))
        for (det, subject, bucket, instance), n in sorted(per_instance.items(), key=lambda kv: kv[0][2]):
            ttl = (det.window_buckets + 2) * det.bucket_seconds + 60
            args += ["i", f"{p}c:{det.name}:{subject}", bucket, n, det.window_buckets, ttl, instance]
            groups.append(("i", det, subject, bucket))
        for (det, subject, bucket), members in sorted(distinct.items(), key=lambda kv: kv[0][2]):
            ttl = (det.window_buckets + 2) * det.bucket_seconds + 60
            args += ["d", f"{p}d:{det.name}:{subject}", bucket, det.window_buckets, ttl, len(members), *members]
            groups.append(("d", det, subject, bucket))
        if not groups:
            return []
        results = self._apply(args=[len(groups), *args])
        windows: dict[tuple[str, DetectorConfig, str, int], list[Any]] = {
            group: result for group, result in zip(groups, results, strict=True)}

        candidates: dict[tuple[str, str], Detection] = {}
        fire_bucket: dict[tuple[str, str], tuple[DetectorConfig, int]] = {}
        for (kind, det, subject, bucket), result in windows.items():
            detection = self._judge(kind, det, subject, bucket, result, windows)
            if detection is not None:
                key = (det.name, detection.subject)
                candidates[key] = detection  # the latest bucket of the batch wins (groups are time-ordered)
                fire_bucket[key] = (det, bucket)
        if not candidates:
            return []
        fire_args: list[Any] = []
        keys = list(candidates)
        for key in keys:
            det, bucket = fire_bucket[key]
            fire_args += [f"{p}f:{key[0]}:{key[1]}", bucket, det.window_buckets,
                          (det.window_buckets + 2) * det.bucket_seconds + 60]
        fired = self._fire(args=[len(keys), *fire_args])
        detections = []
        for key, flag in zip(keys, fired, strict=True):
            if int(flag):
                detection = candidates[key]
                ev = evidence.get(key)
                if ev is not None:
                    detection.instances = detection.instances or dict(ev.instances)
                    detection.samples = ev.samples
                    detection.first_ts, detection.last_ts = ev.first_ts, ev.last_ts
                detections.append(detection)
        return detections

    def _judge(self, kind: str, det: DetectorConfig, subject: str, bucket: int, result: list[Any],
               windows: dict[tuple[str, DetectorConfig, str, int], list[Any]]) -> Detection | None:
        def make(event_type: str, subject_kind: str, count: int, **extra: Any) -> Detection:
            return Detection(detector=det.name, kind=det.kind, event_type=event_type, subject=subject,
                             subject_kind=subject_kind, count=count, threshold=det.threshold,
                             window_seconds=det.window_seconds, severity=det.severity, first_ts=0.0, last_ts=0.0,
                             extra=extra)

        cur = int(result[0])
        if kind == "i":  # login brute force: total across instances, and the busiest instance alone
            top = int(result[1])
            if cur < det.threshold:
                return None
            per = dict(part.split("=", 1) for part in (_text(result[2]) or "").split(",") if "=" in part)
            split = top < det.threshold
            detection = make("login_bruteforce_split" if split else "login_bruteforce", "ip", cur,
                             cross_instance=split, busiest_instance_count=top)
            detection.instances = {name: int(n) for name, n in per.items()}
            return detection
        if kind == "d":
            if cur < det.threshold:
                return None
            total = windows.get(("c", det, subject, bucket))
            requests = int(total[0]) if total else 0
            if requests < int(det.params.get("min_requests", 0)):
                return None
            return make("distributed_probing", "network", requests, distinct_ips=cur)
        if det.kind == "distributed_probing":
            return None  # the count half of a distinct group, judged with it
        if det.kind == "error_rate":
            if subject.endswith("\x00all"):
                return None
            total = windows.get(("c", det, subject + "\x00all", bucket))
            requests = int(total[0]) if total else cur
            if cur < det.threshold or cur < float(det.params.get("ratio", 0.5)) * requests:
                return None
            return make("error_rate_spike", "route", cur, requests=requests)
        if det.kind == "traffic_spike":
            base_windows = int(det.params.get("baseline_windows", 0))
            mean = int(result[1]) / base_windows if base_windows else 0.0
            if cur < det.threshold or cur < float(det.params.get("factor", 5)) * mean:
                return None
            return make("traffic_spike", "route", cur, baseline_mean=round(mean, 1))
        if cur < det.threshold:
            return None
        event_type = {"path_probing": "path_probing", "bad_user_agent": "bad_user_agent",
                      "waf_block_burst": "waf_block_burst"}.get(det.kind)
        if det.kind == "payload":
            event_type = f"{det.params.get('class', 'payload')}_probing"
        return make(event_type or det.kind, "ip" if subject != "-" else "fleet", cur)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
