"""The request target (RFC 9112 §3.2) split into the ASGI path, raw_path and query_string."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from appserver.errors import ProtocolError


def split_target(target: bytes) -> tuple[str, bytes, bytes]:
    """Return (path, raw_path, query_string) for origin-, absolute- and asterisk-form targets.

    ``path`` is percent-decoded as UTF-8; ``raw_path`` keeps the bytes as sent. A target that is
    not ASCII is refused: RFC 9112 gives it no meaning and decoding it would be guesswork.
    """
    if target[:1] == b"/" or target == b"*":
        raw_path, _, query = target.partition(b"?")  # origin form: nearly every request
    else:
        # Absolute form, sent to proxies but valid to any server (RFC 9112 §3.2.2).
        try:
            parts = urlsplit(target.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("invalid request target") from None
        if not parts.scheme or not parts.netloc:
            raise ProtocolError("invalid request target")
        raw_path = (parts.path or "/").encode("ascii")
        query = parts.query.encode("ascii")
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("request target is not ASCII") from None
    if "%" in path:
        path = unquote(path)
    return path, raw_path, query
