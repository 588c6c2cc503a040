"""CPU-seconds per process role during a benchmark window, read from ``/proc`` (Linux only).

A role is either a process tree (a root pid: the process, its live descendants, and — through ``cutime``/``cstime`` —
every descendant already reaped by a process of the tree, e.g. the agent's ``nginx -t`` runs or nginx's old
workers) or the PostgreSQL backends serving one database. Backends are children of the shared postmaster (other
databases' backends are reaped into the same ``cutime``), so they are sampled instead: a thread reads every backend
whose process title names the database every ``interval`` seconds and keeps each one's last ``utime+stime``. A
backend living less than one interval, or the CPU a backend burns between its last sample and its exit, is missed:
with one connection per task this undercounts PostgreSQL, with connections kept it is exact to one interval.
``machine`` is every CPU of the machine from ``/proc/stat`` (busy = all but idle and iowait), whoever used it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own utime+stime, reaped children's cutime+cstime) in seconds, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ppid, (utime + stime) / TICK, (cutime + cstime) / TICK


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def tree_seconds(root: int) -> float:
    """CPU-seconds of ``root`` and its descendants, live or reaped within the tree."""
    parents: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, float, float]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None:
            stats[pid] = st
            parents.setdefault(st[0], []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        st = stats.get(pid)
        if st is None:
            continue
        total += st[1] + st[2]
        todo.extend(parents.get(pid, []))
    return total


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


def children_seconds() -> float:
    """This process's reaped children (e.g. every ``lego`` run waited for), in CPU-seconds."""
    usage = os.times()
    return usage.children_user + usage.children_system


@dataclass
class PgBackends:
    """Samples the backends of one database (process title ``postgres: user DB host(port) …``)."""

    database: str
    interval: float = 0.05
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    seen: int = 0  # distinct backends sampled during the window

    def _sample(self, first: bool) -> None:
        marker = f" {self.database} ".encode()
        for pid in _all_pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if not title.startswith(b"postgres: ") or marker not in title:
                continue
            st = _stat(pid)
            if st is None:
                continue
            if pid not in self._last:
                self._first[pid] = st[1] if first else 0.0  # a backend born in the window counts from zero
            self._last[pid] = st[1]

    def start(self) -> None:
        self._sample(first=True)

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self._sample(first=False)

        self._thread = threading.Thread(target=loop, name="pg-cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(first=False)
        self.seen = len(self._last)
        return sum(self._last[pid] - self._first.get(pid, 0.0) for pid in self._last)


@dataclass
class CpuMeter:
    """CPU-seconds per role between ``start()`` and ``stop()``. ``trees`` maps a role to a function returning its
    root pids (looked up at start and stop, so a role's processes must live through the window)."""

    trees: dict[str, Callable[[], list[int]]]
    database: str = ""
    children_role: str = ""  # a role for this process's reaped children (each baseline tool run)
    _before: dict[str, float] = field(default_factory=dict)
    _pg: PgBackends | None = None
    _started: float = 0.0
    result: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _read(self) -> dict[str, float]:
        out = {role: sum(tree_seconds(pid) for pid in roots()) for role, roots in self.trees.items()}
        if self.children_role:
            out[self.children_role] = children_seconds()
        out["bench driver (this process)"] = sum(os.times()[:2])
        out["machine (all CPUs, everyone's)"] = machine_busy_seconds()
        return out

    def start(self) -> CpuMeter:
        if self.database:
            self._pg = PgBackends(self.database)
            self._pg.start()
        self._before = self._read()
        self._started = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.wall = time.perf_counter() - self._started
        self.result = {role: after[role] - self._before.get(role, 0.0) for role in after}
        if self._pg is not None:
            self.result["postgresql backends (this database)"] = self._pg.stop()
        self.load_average = os.getloadavg()
        return self.result

    def table(self, title: str, certificates: int) -> str:
        """A markdown table: CPU-seconds, per certificate, and % of one core over the window."""
        lines = [f"{title}: {certificates} certificates in {self.wall:.1f} s wall; load average at the end "
                 f"{self.load_average[0]:.2f} / {self.load_average[1]:.2f} / {self.load_average[2]:.2f}",
                 "", "| process | CPU-s | CPU-s per certificate | % of one core |", "|---|---|---|---|"]
        machine = "machine (all CPUs, everyone's)"
        ours = 0.0
        for role, seconds in self.result.items():
            if role in (machine, "bench driver (this process)"):
                continue
            ours += seconds
            lines.append(f"| {role} | {seconds:.2f} | {seconds / max(1, certificates):.4f} | "
                         f"{100 * seconds / max(self.wall, 1e-9):.0f} |")
        lines.append(f"| **sum of the rows above** | {ours:.2f} | **{ours / max(1, certificates):.4f}** | "
                     f"{100 * ours / max(self.wall, 1e-9):.0f} |")
        for role in ("bench driver (this process)", machine):
            seconds = self.result.get(role, 0.0)
            lines.append(f"| {role} | {seconds:.2f} | {seconds / max(1, certificates):.4f} | "
                         f"{100 * seconds / max(self.wall, 1e-9):.0f} |")
        return "\n".join(lines)
