"""Atomic file writes with a snapshot, so a failed apply puts every previous file back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Transaction:
    """Record each path's previous content before changing it; ``rollback()`` restores all of them."""

    def __init__(self) -> None:
        self._before: dict[Path, tuple[bytes | None, int]] = {}

    def _remember(self, path: Path) -> None:
        if path not in self._before:
            try:
                self._before[path] = (path.read_bytes(), path.stat().st_mode & 0o777)
            except FileNotFoundError:
                self._before[path] = (None, 0)

    def write(self, path: Path, data: bytes, mode: int = 0o644) -> bool:
        """Write unless the file already holds ``data``; True when it changed."""
        self._remember(path)
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        atomic_write(path, data, mode)
        return True

    def delete(self, path: Path) -> None:
        self._remember(path)
        path.unlink(missing_ok=True)

    @property
    def changed(self) -> bool:
        for path, (old, _) in self._before.items():
            try:
                if path.read_bytes() != old:
                    return True
            except FileNotFoundError:
                if old is not None:
                    return True
        return False

    def rollback(self) -> None:
        # keys before certificates again: restore in the order they were first touched
        for path, (old, mode) in self._before.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, old, mode or 0o644)
