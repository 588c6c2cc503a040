"""gateway-agent: the reference Gateway sidecar (see gateway_agent.config for the settings)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import grpc

from .client import Agent
from .config import AgentConfig, parser

logger = logging.getLogger("gateway_agent")


async def run_until_signalled(agent: Agent) -> None:
    """Run until SIGTERM or SIGINT, each handled explicitly: a process started with SIGINT ignored (a background
    job of a non-interactive shell, a CI step) would otherwise ignore its supervisor's Ctrl-C, and SIGTERM would
    end it without closing the stream."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await agent.run_forever()
    except asyncio.CancelledError:
        logger.info("stopping on a signal")


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
        asyncio.run(run_until_signalled(agent))
    except KeyboardInterrupt:
        return 0
    except grpc.aio.AioRpcError as exc:
        print(f"gateway-agent: refused by the Worker: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
