"""Charts for reports and dashboards, drawn with matplotlib's object API (no pyplot state: safe in threads and
in a long-running web process). Each function returns a ``Figure``; ``png`` renders one for HTML."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display in a worker

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

STATUS_COLOURS = {"2xx": "#3a923a", "3xx": "#6baed6", "4xx": "#f0a030", "5xx": "#d62728", "other": "#999999"}
A4_LANDSCAPE = (11.69, 8.27)


def _time_axis(ax: object, times: Sequence[datetime]) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)  # type: ignore[attr-defined]
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[attr-defined]
    ax.grid(True, alpha=0.3)  # type: ignore[attr-defined]


def _x(times: Sequence[datetime]) -> Any:
    """Datetimes for an x axis: matplotlib converts them itself (its stubs only know numbers and arrays)."""
    return list(times)


def traffic_chart(times: Sequence[datetime], by_status: dict[str, Sequence[float]], title: str,
                  size: tuple[float, float] = (10, 4)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    labels = [k for k in STATUS_COLOURS if any(by_status.get(k, ()))]
    if times and labels:
        ax.stackplot(_x(times), *[by_status[k] for k in labels], labels=labels,
                     colors=[STATUS_COLOURS[k] for k in labels])
        ax.legend(loc="upper left", fontsize=8)
        _time_axis(ax, times)
    else:
        _empty(ax)
    ax.set_title(title)
    ax.set_ylabel("requests")
    return fig


def latency_chart(times: Sequence[datetime], series: dict[str, Sequence[float | None]], title: str,
                  size: tuple[float, float] = (10, 4)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    if times and any(v is not None for values in series.values() for v in values):
        for name, values in series.items():
            ax.plot(_x(times), [float("nan") if v is None else v for v in values], label=name, linewidth=1.2)
        ax.set_yscale("log")
        ax.legend(loc="upper left", fontsize=8)
        _time_axis(ax, times)
    else:
        _empty(ax)
    ax.set_title(title)
    ax.set_ylabel("latency (ms)")
    return fig


def counts_chart(times: Sequence[datetime], values: Sequence[float], title: str, ylabel: str,
                 colour: str = "#d62728", size: tuple[float, float] = (10, 4)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    if times and any(values):
        ax.fill_between(_x(times), values, step="post", color=colour)
        _time_axis(ax, times)
    else:
        _empty(ax)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return fig


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str, colour: str = "#4c72b0",
              size: tuple[float, float] = (10, 4)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    if labels:
        positions = list(range(len(labels)))[::-1]
        ax.barh(positions, values, color=colour)
        ax.set_yticks(positions, [label if len(label) <= 48 else label[:45] + "..." for label in labels],
                      fontsize=8)
        for pos, value in zip(positions, values, strict=True):
            ax.annotate(f"{value:,.0f}", (value, pos), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    else:
        _empty(ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return fig


def _empty(ax: object) -> None:
    ax.text(0.5, 0.5, "no data in this period", ha="center", va="center",  # type: ignore[attr-defined]
            transform=ax.transAxes, color="#777777")  # type: ignore[attr-defined]
    ax.set_xticks([])  # type: ignore[attr-defined]
    ax.set_yticks([])  # type: ignore[attr-defined]


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_data_uri(fig: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(png(fig)).decode("ascii")
