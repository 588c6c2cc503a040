"""Prometheus metrics of a run_grpc replica (exposed on its own port: run_grpc --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STREAMS = Gauge("gw_push_streams", "Gateway push streams held by this replica")
PUSHES = Counter("gw_push_updates_total", "Resource updates written to Gateway streams", ["type"])
ACKS = Counter("gw_push_acks_total", "ACKs received", ["type"])
NACKS = Counter("gw_push_nacks_total", "NACKs received (version parked for that instance)", ["type"])
REJECTED_STREAMS = Counter("gw_push_stream_errors_total", "Streams ended with an error status", ["code"])
CONVERGE = Histogram("gw_push_converge_seconds", "Desired version created -> ACKed by an instance", ["type"],
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
DB_FLUSH = Histogram("gw_push_db_flush_seconds", "One batched write of sent/ack/nack events")
