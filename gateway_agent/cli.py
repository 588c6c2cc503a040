"""gateway-agent: the reference Gateway sidecar (see gateway_agent.config for the settings)."""

from __future__ import annotations

import asyncio
import logging
import sys

import grpc

from .client import Agent
from .config import AgentConfig, parser


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    config_path, level = args.pop("config"), args.pop("log_level")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = AgentConfig.load(config_path, args)
        agent = Agent(cfg)
    except (OSError, ValueError) as exc:
        print(f"gateway-agent: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(agent.run_forever())
    except KeyboardInterrupt:
        return 0
    except grpc.aio.AioRpcError as exc:
        print(f"gateway-agent: refused by the Worker: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
