"""Mesos's RecordIO framing of an event stream: each record is ``<length in bytes>\\n<bytes>``."""

from __future__ import annotations

import json
from typing import Any

MAX_RECORD = 64 * 1024 * 1024
"""Bytes: a length above this is a broken stream, not a record to wait for."""


def encode(event: dict[str, Any]) -> bytes:
    """One record: the event as compact JSON, behind its length."""
    body = json.dumps(event, separators=(",", ":")).encode()
    return b"%d\n%s" % (len(body), body)


class Decoder:
    """Records out of a stream cut anywhere (HTTP chunks need not follow records)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of a record not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The records ``data`` completes, in order."""
        self._buffer += data
        records: list[dict[str, Any]] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > 20:
                    raise ValueError("RecordIO: no length line in the first 20 bytes")
                return records
            length = int(self._buffer[:newline])
            if not 0 <= length <= MAX_RECORD:
                raise ValueError(f"RecordIO: record length {length} out of bounds")
            if len(self._buffer) < newline + 1 + length:
                return records
            body = bytes(self._buffer[newline + 1 : newline + 1 + length])
            del self._buffer[: newline + 1 + length]
            records.append(json.loads(body))
