"""``python -m tests.slow_agent --config ...``: the reference gateway-agent, unchanged but for ACME tokens: it
waits SLOW_AGENT_CHALLENGE_DELAY seconds before writing a non-empty token set, and after writing it (just
before the ACK goes out) appends ``{"tokens": [...], "at": <unix time>}`` to <state_dir>/challenges-applied.jsonl.
A Worker that answers the CA before the ACK is then caught every time, not once in a while."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from gateway_agent import apply, cli

SLOW_AGENT_LOG = "challenges-applied.jsonl"
DELAY = float(os.environ.get("SLOW_AGENT_CHALLENGE_DELAY", "1.5"))
_apply = apply.Applier.apply


def slow_apply(self: apply.Applier, update: apply.pb.ResourceUpdate) -> None:
    tokens = [c.token for c in update.acme_challenges.challenges] if update.type == "acme_challenges" else []
    if tokens:
        time.sleep(DELAY)
    _apply(self, update)
    if tokens:
        with open(Path(self.cfg.state_dir) / SLOW_AGENT_LOG, "a") as fh:
            fh.write(json.dumps({"tokens": tokens, "at": time.time()}) + "\n")


if __name__ == "__main__":
    apply.Applier.apply = slow_apply  # type: ignore[method-assign]
    sys.exit(cli.main())
