"""Prometheus metrics of a run_grpc replica, in a registry of their own (served by run_grpc --metrics-port).

A registry of its own: the web process's default registry holds collectors that query the database on every
scrape, which a push replica must not do (each scrape thread would open a connection of its own).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes: the memory a replica holds per stream

STREAMS = Gauge("gw_push_streams", "Open streaming calls (push streams and draft watches) held by this replica",
                registry=REGISTRY)
PUSHES = Counter("gw_push_updates_total", "Resource updates written to Gateway streams", ["type"], registry=REGISTRY)
ACKS = Counter("gw_push_acks_total", "ACKs received", ["type"], registry=REGISTRY)
NACKS = Counter("gw_push_nacks_total", "NACKs received (version parked for that instance)", ["type"],
                registry=REGISTRY)
REJECTED_STREAMS = Counter("gw_push_stream_errors_total", "Calls ended with an error status", ["code"],
                           registry=REGISTRY)
REFUSED_CALLS = Counter("gw_push_refused_total", "Calls refused at the trust boundary",
                        ["reason"], registry=REGISTRY)  # credential, rate, streams
SLOW_CONSUMERS = Counter("gw_push_slow_consumers_total", "Streams cut off because the Gateway stopped reading",
                         registry=REGISTRY)
CONVERGE = Histogram("gw_push_converge_seconds", "Desired version created -> ACKed by an instance", ["type"],
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)
DB_FLUSH = Histogram("gw_push_db_flush_seconds", "One batched write of sent/ack/nack events", registry=REGISTRY)
