"""RFC 6455 framing for the one case that dominates real traffic, and frame boundaries for all.

The websockets library is the authority on the protocol; this module lets the session skip its
generator-based parser for complete, unfragmented, masked text or binary frames, and lets the
session track where frames begin and end, so the library's input always starts at a frame
boundary and its parser is at one whenever a shortcut frame comes (which is what makes the
shortcut safe to take on any frame).
"""

from __future__ import annotations

import struct

try:  # the library's C helper; a pure-Python fallback when its extension is not built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - depends on how websockets was installed
    from websockets.utils import apply_mask

__all__ = ["FAST_BINARY", "FAST_TEXT", "apply_mask", "frame_bounds", "server_frame_head"]

# First byte of a complete (FIN) text / binary frame without RSV bits: the frames a client sends
# for an ordinary message when no extension is in use.
FAST_TEXT = 0x81
FAST_BINARY = 0x82

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def frame_bounds(data: bytes | bytearray, start: int) -> tuple[int, int]:
    """Where the payload of the frame at ``start`` begins and how long it is (RFC 6455 §5.2).

    The payload begins after the masking key when the frame is masked. Returns ``(-1, 0)``
    until ``data`` holds the length; the masking key and the payload may still be incomplete
    (the frame is whole once ``len(data) >= begin + length``), so a length over the limit is
    known, and refused, as early as the library would.
    """
    end = len(data)
    if end - start < 2:
        return -1, 0
    second = data[start + 1]
    length = second & 0x7F
    head = start + 2
    if length == 126:
        if end < head + 2:
            return -1, 0
        (length,) = _U16.unpack_from(data, head)
        head += 2
    elif length == 127:
        if end < head + 8:
            return -1, 0
        (length,) = _U64.unpack_from(data, head)
        head += 8
    if second & 0x80:
        head += 4
    return head, length


def server_frame_head(first: int, length: int) -> bytes:
    """The header of an unmasked server frame (RFC 6455 §5.2) whose first byte is ``first``."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEAD16.pack(first, 126, length)
    return _HEAD64.pack(first, 127, length)
