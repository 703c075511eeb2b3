"""Agent <-> scoring-host messages: one JSON object per line over a pipe (stdlib only).

The host runs under the deployment's interpreter, so this module must import
nothing outside the standard library.

agent -> host: {"kind": "run", "index", "attempt", "files" | "segments", "part"}
               {"kind": "shutdown"}
host -> agent: {"kind": "ready", "pid", "init_s"}
               {"kind": "init_failed", "error", "traceback"}
               {"kind": "done", "index", "returned", "run_s", "cpu_s"}
               {"kind": "failed", "index", "error", "traceback", "run_s", "cpu_s"}
"""

from __future__ import annotations

import json
import os
import select
import time
from typing import Any

READY = "ready"
INIT_FAILED = "init_failed"
RUN = "run"
DONE = "done"
FAILED = "failed"
SHUTDOWN = "shutdown"


def encode(kind: str, **fields: Any) -> bytes:
    fields["kind"] = kind
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)


def send(fd: int, kind: str, **fields: Any) -> None:
    """Write one whole message; a dead reader raises BrokenPipeError."""
    data = memoryview(encode(kind, **fields))
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Channel:
    """Reads messages from a pipe, with an optional deadline per message."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Next message; None when the writer closed the pipe (host died).

        Raises TimeoutError when no whole message arrived within `timeout` s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return decode(line)
