"""The analytics app's door for other apps.

- ``add_batch(events, key=None)``: count a batch of request events (``logpipeline.events.LogEvent``) into the
  rollups, once (see ``analytics.rollups``). The log pipeline calls it in the transaction that stores the batch.
- ``generate_report(kind)``: build (or return) the last complete daily or weekly report.
- ``detect_anomalies()``, ``forecast_capacity()``: traffic patterns over the hour rollups.
"""

from __future__ import annotations

from analytics.patterns import detect_anomalies, forecast_capacity
from analytics.reports import generate_report
from analytics.rollups import add_batch, rollup_new_requests

__all__ = ["add_batch", "detect_anomalies", "forecast_capacity", "generate_report", "rollup_new_requests"]
