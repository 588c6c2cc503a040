"""Ship the data plane's access log on the push stream, resuming where the Worker acknowledged.

nginx writes one JSON object a line (``NGINX_JSON_LOG_FORMAT``, the field names the Worker's log pipeline reads;
rendered into the agent's ``http {}`` include, see ``render_log_directives``). The agent tails that file and sends
``LogBatch{entries, source, offset_start, offset_end}``: ``source`` is ``<path>#<inode>.<generation>`` and the
offsets are the batch's bytes in that file. The Worker stores the rows and the offset in one transaction and
answers ``LogAck{source, offset_end}`` (also for a range it already stored: then it stores nothing). The agent
persists the acknowledged offset (``<state_dir>/logship.json``) and reads on from there, so a restart or a lost
ack resends a range the Worker recognises: no loss, no duplicates.

Rotation, kept simple: a new inode at the path (``mv`` + reopen) → the old file is read to its end first, then the
new one from 0 (a new source). A file shorter than the acknowledged offset (``copytruncate``) → the generation
goes up and reading starts at 0 (a new source). Lines appended to a rotated file while the agent was down, after
its acknowledged offset, are not shipped.

This module must not import Django or the Worker's apps: the format string is a copy of
``logpipeline.parsers.NGINX_JSON_LOG_FORMAT`` (tests/test_agent_logship.py checks they agree).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gateway_worker.v1 import gateway_worker_pb2 as pb

from .files import atomic_write

logger = logging.getLogger(__name__)

NGINX_JSON_LOG_FORMAT = (
    "log_format gateway_json escape=json '{"
    '"time":"$time_iso8601","msec":$msec,"remote_addr":"$remote_addr",'
    '"x_forwarded_for":"$http_x_forwarded_for","method":"$request_method","host":"$host",'
    '"request_uri":"$request_uri","protocol":"$server_protocol","status":$status,'
    '"body_bytes_sent":$body_bytes_sent,"request_length":$request_length,"request_time":$request_time,'
    '"referer":"$http_referer","user_agent":"$http_user_agent","request_id":"$request_id",'
    '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time"'
    "}';"
)
MAX_LINE_BYTES = 64 * 1024  # the pipeline refuses longer lines anyway; one longer is sent as a marker, unparsed


def render_log_directives(access_log: str) -> str:
    """The ``http {}`` lines that make nginx write the JSON access log the agent ships (besides its own logs)."""
    if any(c in access_log for c in ";{}'\"\n\\ "):
        raise ValueError(f"access_log {access_log!r}: a plain path without spaces or nginx syntax")
    return f"{NGINX_JSON_LOG_FORMAT}\naccess_log {access_log} gateway_json;\n"


def _int(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


def line_to_entry(line: bytes) -> pb.LogEntry:
    """One JSON access-log line as the v1 ``LogEntry``; anything else becomes an entry the Worker counts as
    skipped (its message carries the start of the line)."""
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError):
        return pb.LogEntry(level="error", message=f"unparsed access-log line: {line[:200]!r}")
    msec = obj.get("msec")
    meta = {k: str(obj[k]) for k in ("x_forwarded_for", "referer", "protocol", "upstream_status",
                                      "upstream_response_time", "time") if obj.get(k) not in (None, "", "-")}
    if obj.get("request_id"):
        meta["request_id"] = str(obj["request_id"])
    return pb.LogEntry(
        timestamp_ms=int(float(msec) * 1000) if msec not in (None, "") else 0, level="info",
        client_ip=str(obj.get("remote_addr", "")), host=str(obj.get("host", "")),
        method=str(obj.get("method", "")), path=str(obj.get("request_uri", "")), status_code=_int(obj.get("status")),
        response_time_ms=int(float(obj.get("request_time") or 0) * 1000), bytes_sent=_int(obj.get("body_bytes_sent")),
        bytes_received=_int(obj.get("request_length")), user_agent=str(obj.get("user_agent", "")),
        request_id=str(obj.get("request_id", "")), metadata=meta)


@dataclass
class Batch:
    source: str
    offset_start: int
    offset_end: int
    entries: list[pb.LogEntry]

    def message(self) -> pb.GatewayMessage:
        return pb.GatewayMessage(logs=pb.LogBatch(entries=self.entries, source=self.source,
                                                  offset_start=self.offset_start, offset_end=self.offset_end))


class Tailer:
    """The access log's position: (inode, generation, acknowledged offset), persisted on every ack."""

    def __init__(self, path: str, state_file: Path, max_lines: int = 500, max_bytes: int = 512 * 1024) -> None:
        self.path = path
        self.state_file = state_file
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.inode: int | None = None
        self.generation = 0
        self.offset = 0
        self.fh: BinaryIO | None = None
        try:
            saved = json.loads(state_file.read_text())
            if saved.get("path") == path:
                self.inode, self.generation, self.offset = saved["inode"], saved["generation"], saved["offset"]
        except FileNotFoundError:
            pass

    @property
    def source(self) -> str:
        return f"{self.path}#{self.inode}.{self.generation}"

    def _save(self) -> None:
        atomic_write(self.state_file, json.dumps({"path": self.path, "inode": self.inode,
                                                  "generation": self.generation, "offset": self.offset}).encode())

    def _switch(self, inode: int) -> None:
        if self.fh is not None:
            self.fh.close()
        self.fh = None
        self.inode, self.generation, self.offset = inode, 0, 0
        self._save()

    def _open(self) -> BinaryIO | None:
        """The file being read: the one with our inode (kept open across a rotation until read to its end)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if self.fh is None:
            if st is None:
                return None
            if self.inode != st.st_ino:  # first start, or rotated while the agent was down
                if self.inode is not None:
                    logger.warning("%s is a new file (inode %s, was %s): shipping it from the start",
                                   self.path, st.st_ino, self.inode)
                self._switch(st.st_ino)
            self.fh = open(self.path, "rb")  # noqa: SIM115 - kept open while tailing
            if os.fstat(self.fh.fileno()).st_ino != self.inode:  # replaced between stat and open: next round
                self.fh.close()
                self.fh = None
                return None
        size = os.fstat(self.fh.fileno()).st_size
        if size < self.offset:  # truncated in place (copytruncate): a new generation from 0
            logger.warning("%s was truncated (%d < %d): shipping it from the start", self.path, size, self.offset)
            self.generation, self.offset = self.generation + 1, 0
            self._save()
        return self.fh

    def read_batch(self) -> Batch | None:
        """The next batch from the acknowledged offset (complete lines only), or None when there is nothing new."""
        fh = self._open()
        if fh is None:
            return None
        fh.seek(self.offset)
        data = fh.read(self.max_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= MAX_LINE_BYTES:  # one enormous line: skip to its end, send a marker for it
                skipped = len(data)
                while True:
                    more = fh.read(1 << 20)
                    if not more:
                        return None  # not finished yet
                    nl = more.find(b"\n")
                    if nl >= 0:
                        skipped += nl + 1
                        break
                    skipped += len(more)
                return Batch(self.source, self.offset, self.offset + skipped,
                             [pb.LogEntry(level="error", message=f"access-log line of {skipped} bytes not shipped")])
            st_ino = _inode(self.path)
            if st_ino is not None and st_ino != self.inode and not data:  # rotated and the old file is done
                self._switch(st_ino)
                return self.read_batch()
            return None
        chunk = data[:end + 1]
        lines = chunk.split(b"\n")[:-1]
        if len(lines) > self.max_lines:
            lines = lines[:self.max_lines]
            chunk = b"".join(line + b"\n" for line in lines)
        entries = [line_to_entry(line) for line in lines if line.strip()]
        return Batch(self.source, self.offset, self.offset + len(chunk), entries)

    def acked(self, ack: pb.LogAck) -> None:
        """The Worker's stored end for our source is where we read on (also after it refused a resent range)."""
        if ack.source != self.source:
            return
        if ack.offset_end != self.offset:
            self.offset = ack.offset_end
            self._save()


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
