"""Atomic file writes with a snapshot, so a failed apply puts every previous file back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, sync_data: bool = True,
                 sync_dir: bool = True) -> None:
    """Temp file in the same directory, rename: readers see old or new, never half. ``sync_data`` fsyncs the file
    before the rename and ``sync_dir`` the directory after it, so the new content survives a power loss too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync_data:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Transaction:
    """Record each path's previous content before changing it; ``rollback()`` restores all of them."""

    def __init__(self, durable: bool = True) -> None:
        """``durable``: each written file is fsynced, and ``sync()`` fsyncs every touched directory once (a
        rename is durable only then); not durable: files reach the page cache only (readers see them all the
        same), for content that is worthless after a power loss anyway."""
        self._before: dict[Path, tuple[bytes | None, int]] = {}
        self.durable = durable
        self._dirs: set[Path] = set()

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
        atomic_write(path, data, mode, sync_data=self.durable, sync_dir=False)
        self._dirs.add(path.parent)
        return True

    def delete(self, path: Path) -> None:
        self._remember(path)
        path.unlink(missing_ok=True)
        self._dirs.add(path.parent)

    def sync(self) -> None:
        """Make the writes and deletes so far durable: one fsync per directory touched (if ``durable``)."""
        if self.durable:
            for directory in sorted(self._dirs):
                if directory.exists():
                    fsync_dir(directory)
        self._dirs.clear()

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
