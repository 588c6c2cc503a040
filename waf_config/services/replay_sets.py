"""Replay sets: stored requests to replay versions against (an imported JSON-lines corpus; later the log pipeline)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from audit.services import record_event
from waf_config.models import ReplayRequest, ReplaySet
from waf_config.traffic import Request

from .common import WafError, actor_of


def import_corpus(name: str, lines: Iterable[str], *, actor: Any, source: str = "", replace: bool = False,
                  batch: int = 2000) -> ReplaySet:
    """One request per line, as ``traffic.Request`` fields (method, uri, headers, client_ip, timestamp, label…).
    Every line is checked first; a bad line refuses the whole file with its line number."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            rows.append(Request.from_dict(data).to_dict())
        except (ValueError, TypeError) as exc:
            raise WafError(f"{source or name}: line {number}: {exc}") from None
    with transaction.atomic():
        replay_set, created = ReplaySet.objects.get_or_create(name=name, defaults={"source": source[:200]})
        if not created and not replace:
            raise WafError(f"replay set {name!r} exists (use replace to load it again)")
        replay_set.requests.all().delete()
        for start in range(0, len(rows), batch):
            ReplayRequest.objects.bulk_create(
                ReplayRequest(replay_set=replay_set, position=start + i, data=d)
                for i, d in enumerate(rows[start:start + batch]))
        replay_set.request_count = len(rows)
        replay_set.source = source[:200]
        replay_set.save(update_fields=["request_count", "source"])
        record_event(actor_of(actor), "waf.replay_set_imported", obj=replay_set,
                     after={"requests": len(rows), "source": source[:200]},
                     summary=f"replay set {name}: {len(rows)} requests imported")
    return replay_set
