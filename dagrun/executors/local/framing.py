"""Messages on a worker's result pipe, framed as ``multiprocessing.Connection`` frames them.

A message is a 4-byte big-endian length and the bytes (a length over 2 GiB:
-1, then an 8-byte length). Both ends of the pipe between the driver and a
worker read through an ``Inbox``: one ``read`` takes everything the other
side has written so far, and the messages come out of the buffer one by one,
where ``Connection.recv_bytes`` spends two reads on each (header, body) and
the driver a ``poll`` more to learn whether another one waits.
"""

from __future__ import annotations

import os
import struct

READ_SIZE = 1 << 16  # bytes read at a time: a pipe's capacity
SMALL = 16384  # up to this size a message and its header go in one write
_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


def send(fd: int, payload: bytes) -> None:
    """Write one message to ``fd`` (blocking; OSError when the other side is gone)."""
    size = len(payload)
    if size <= SMALL:
        write_all(fd, frame(payload))
        return
    header = _LENGTH.pack(size) if size <= 0x7FFFFFFF else _LENGTH.pack(-1) + _LONG_LENGTH.pack(
        size)
    write_all(fd, header)
    write_all(fd, payload)


def frame(payload: bytes) -> bytes:
    """A small message with its length in front (``SMALL`` bytes at most)."""
    return _LENGTH.pack(len(payload)) + payload


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Inbox:
    """The bytes read from one pipe that are not yet taken as messages.

    Messages are taken from ``start`` on; the taken bytes are dropped only once
    they are half the buffer, so a read that brought many messages is not moved
    down once per message.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.start = 0  # where the first message not yet taken begins

    def fill(self) -> None:
        """One read of what waits in the pipe (blocks while it is empty); EOFError at its end."""
        data = os.read(self.fd, READ_SIZE)
        if not data:
            raise EOFError
        if self.start and self.start * 2 >= len(self.buffer):
            del self.buffer[:self.start]
            self.start = 0
        self.buffer += data

    def take(self) -> bytes | None:
        """The next whole message read so far, if any."""
        bounds = self._first()
        if bounds is None:
            return None
        begin, end = bounds
        with memoryview(self.buffer) as view:
            message = bytes(view[begin:end])
        if end == len(self.buffer):
            self.buffer.clear()
            self.start = 0
        else:
            self.start = end
        return message

    def next(self) -> bytes:
        """The next message, reading (and blocking) until it is whole; EOFError at the end."""
        while True:
            message = self.take()
            if message is not None:
                return message
            self.fill()

    def has_message(self) -> bool:
        """Whether a whole message waits in the buffer."""
        return len(self.buffer) > self.start and self._first() is not None

    def _first(self) -> tuple[int, int] | None:
        buffer, start = self.buffer, self.start
        if len(buffer) - start < 4:
            return None
        (size,) = _LENGTH.unpack_from(buffer, start)
        begin = start + 4
        if size == -1:
            if len(buffer) - start < 12:
                return None
            (size,) = _LONG_LENGTH.unpack_from(buffer, begin)
            begin = start + 12
        end = begin + size
        return (begin, end) if len(buffer) >= end else None
