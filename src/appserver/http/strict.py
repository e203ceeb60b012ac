"""Strict HTTP/1.1 (RFC 9112): one verdict for a request head, whichever parser read it.

h11 and llhttp (httptools) are both strict parsers, but not in the same places. Both adapters
hand every complete head to :func:`check_request` before the request reaches the runtime, and
the h11 adapter also runs :func:`check_raw_head` on the bytes of the head (llhttp refuses
those cases itself), so that what one parser would let through and the other refuse gets one
answer. The policy, in RFC order:

1. Bare CR, bare LF and obs-fold in a head (§2.2, §5.2) are refused with 400 (both MAYs;
   llhttp refuses, so h11 must too). Empty lines before the request line are ignored (§2.2).
2. Versions (§2.3): ``HTTP/1.x`` for x >= 2 is served as HTTP/1.1 (a higher minor version is
   compatible; so it needs a Host); ``HTTP/2.0`` and above on this HTTP/1.1 connection get
   505. The request line is one SP between its parts (§3 allows more; h11 refuses them, and
   the httptools adapter refuses them for llhttp).
3. Methods are tokens; only the methods llhttp knows are served (h11 takes any token, llhttp
   refuses the rest), the others get 400.
4. Host (§3.2): exactly one in HTTP/1.1 (the adapters), and a valid ``uri-host [":" port]``:
   no userinfo, no spaces or slashes, a numeric port.
5. An absolute-form target (§3.2.2) wins over Host: the server MUST use the target's authority,
   so the app sees it in its ``host`` header.
6. Content-Length (§6.3): one field, digits only; several fields or a list (``5, 5``) are refused
   rather than folded, as llhttp does.
7. Transfer-Encoding (§6.1): in an HTTP/1.0 request it is refused (400); chunked must be the
   final coding (else 400); any other coding we cannot decode gets 501 (RFC 9110 §15.6.2).
"""

from __future__ import annotations

import re
from typing import Final

from appserver.http.limits import CONTENT_TOO_LARGE
from appserver.http.parser import BadRequest

NOT_IMPLEMENTED: Final = 501
VERSION_NOT_SUPPORTED: Final = 505

# The request methods llhttp accepts in request mode (llhttp's HTTP method table).
KNOWN_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)

# uri-host [":" port] (RFC 3986 §3.2.2): an IP-literal in brackets, or a reg-name / IPv4 of
# unreserved, pct-encoded and sub-delims characters; never "@" (userinfo), "/", spaces.
_HOST: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?",
)

# Host values already found valid: a server sees the same few on nearly every request, and a set
# lookup is cheaper than the regex. Bounded, like the response header cache.
GOOD_HOSTS: Final[set[bytes]] = set()
GOOD_HOSTS_MAX: Final = 1024

# In a raw head: a control character other than HTAB, CR and LF; a CR not followed by LF; an
# LF not preceded by CR; a line that begins with SP or HTAB (obs-fold).
_BAD_RAW: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")


_VERSION_LINE: Final = re.compile(rb"([!-~]+) [!-~]+ HTTP/([0-9]\.[0-9])\r\n")


def check_raw_head(head: bytes) -> None:
    """Refuse a head (request line to the empty line) with bare CR/LF, obs-fold or controls.

    The request line is judged first, in the order llhttp reads it: an unknown method is 400
    (llhttp refuses it before it reads on), then an HTTP/2+ line is 505 even if a field after
    it is malformed too.
    """
    line = _VERSION_LINE.match(head)
    if line is not None and line.group(2) not in (b"1.0", b"1.1"):
        if line.group(1) not in KNOWN_METHODS:
            raise BadRequest(f"unknown method {line.group(1)[:20]!r}")
        check_version(line.group(2).decode("ascii"))
    match = _BAD_RAW.search(head)
    if match is not None:
        found = match.group()
        if found.startswith(b"\n"):
            raise BadRequest("obsolete line folding in the request head")
        if found in (b"\r", b"\n"):
            raise BadRequest("bare CR or LF in the request head")
        raise BadRequest("control character in the request head")


def transfer_coding_status(codings: list[bytes]) -> None:
    """RFC 9112 §6.1, §7: chunked must be the final coding and applied once (else 400); any
    other coding is one we do not decode (501)."""
    if not codings or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        raise BadRequest("Transfer-Encoding does not end with one chunked")
    if len(codings) > 1:
        raise BadRequest("unsupported transfer coding", NOT_IMPLEMENTED)


def check_version(version: str) -> str:
    """The version to serve ("1.0" or "1.1"); raises 505 for HTTP/2 and above."""
    if version == "1.1" or version == "1.0":
        return version
    major = version.partition(".")[0]
    if major == "1":
        return "1.1"  # RFC 9112 §2.3: a higher minor version is served as ours
    if major == "0":
        raise BadRequest("HTTP/0.9 is not supported")
    raise BadRequest(f"HTTP/{version} is not supported here", VERSION_NOT_SUPPORTED)


def check_request(
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    framing: bool = True,
    body_size: int | None = None,
) -> None:
    """Refuse a head RFC 9112 refuses (see the module docstring). ``headers`` have lower-cased
    names; the Host header of an absolute-form request is replaced in place. ``framing``
    False says the adapter saw no Content-Length or Transfer-Encoding (most requests), which
    spares a pass over the headers. A Content-Length over ``body_size`` (limits.body_size) is
    413, before any of the body is read.

    The httptools adapter skips this call for a head it can tell passes: no framing fields, an
    origin-form target, a method in KNOWN_METHODS and a Host in GOOD_HOSTS. A new rule here
    must hold for such heads too, or change that test.
    """
    if method not in KNOWN_METHODS:
        raise BadRequest(f"unknown method {method[:20]!r}")
    host_index = -1
    if framing:
        lengths = 0
        codings: list[bytes] | None = None
        for index, (name, value) in enumerate(headers):
            if name == b"host":
                host_index = index
            elif name == b"content-length":
                lengths += 1
                if lengths > 1 or not value.strip().isdigit():
                    raise BadRequest("invalid or repeated Content-Length")
                if body_size is not None and int(value) > body_size:
                    raise BadRequest("request body too large", CONTENT_TOO_LARGE)
            elif name == b"transfer-encoding":
                if codings is None:
                    codings = []
                codings.extend(c.strip().lower() for c in value.split(b","))
        if codings is not None:
            if version == "1.0":
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            transfer_coding_status(codings)
    else:
        for index, (name, _) in enumerate(headers):
            if name == b"host":
                host_index = index
                break
    if host_index >= 0:
        host = headers[host_index][1]
        if host not in GOOD_HOSTS:
            if _HOST.fullmatch(host.strip()) is None:
                raise BadRequest("invalid Host header")
            if len(GOOD_HOSTS) < GOOD_HOSTS_MAX:
                GOOD_HOSTS.add(host)
    if target[:1] != b"/" and target != b"*" and method != b"CONNECT":
        # Absolute form: its authority is the request's host (the target itself is checked,
        # and split, by the request cycle).
        scheme, sep, rest = target.partition(b"://")
        if not sep or not scheme:
            raise BadRequest("invalid request target")  # not origin, absolute or asterisk form
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0]
        # RFC 9112 §3.2.2: absolute-form names a host; "http://" with none is no target.
        if not authority or b"@" in authority or _HOST.fullmatch(authority) is None:
            raise BadRequest("invalid authority in the request target")
        if host_index >= 0:
            headers[host_index] = (b"host", authority)
        else:
            headers.append((b"host", authority))


# chunk-size [ chunk-ext ] (RFC 9112 §7.1, §7.1.1): 1 to 16 hex digits (a size that fits in 64
# bits, as llhttp requires), then extensions with BWS only around ";" and "=".
_CHUNK_LINE: Final = re.compile(
    rb"[0-9A-Fa-f]{1,16}"
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"(?:[^\"\\\\\r\n]|\\\\.)*\"))?)*"
)
_MAX_CHUNK_LINE: Final = 4096


class ChunkedChecker:
    """Checks the framing of a chunked body as llhttp does, for the h11 adapter (h11 accepts a
    space after the size, sizes past 64 bits and bare LF line ends, and then waits).

    Fed the raw bytes from the start of the body on; raises :class:`BadRequest` on the first
    fault, and ignores whatever follows the body's end (the next request's bytes).
    """

    __slots__ = ("_left", "_line", "_state")

    def __init__(self) -> None:
        self._state = "size"  # size | data | data-end | trailer | done
        self._line = b""
        self._left = 0

    def feed(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        while pos < end and self._state != "done":
            state = self._state
            if state == "data":
                size = min(self._left, end - pos)
                self._left -= size
                pos += size
                if not self._left:
                    self._state = "data-end"
                continue
            if state == "data-end":
                have = self._line
                piece = data[pos : pos + 2 - len(have)]
                pos += len(piece)
                have += piece
                if not b"\r\n".startswith(have):
                    raise BadRequest("invalid chunk terminator")
                if len(have) == 2:
                    self._line = b""
                    self._state = "size"
                else:
                    self._line = have
                continue
            newline = data.find(b"\n", pos)
            piece = data[pos:] if newline < 0 else data[pos : newline + 1]
            pos += len(piece)
            line = self._line + piece
            if newline < 0:
                if len(line) > _MAX_CHUNK_LINE:
                    raise BadRequest("chunk line too long")
                self._line = line
                continue
            self._line = b""
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                raise BadRequest("bare CR or LF in a chunked body")
            line = line[:-2]
            if state == "size":
                if _CHUNK_LINE.fullmatch(line) is None:
                    raise BadRequest("invalid chunk size line")
                size = int(line.split(b";", 1)[0].rstrip(b" \t"), 16)
                if size:
                    self._left = size
                    self._state = "data"
                else:
                    self._state = "trailer"
            elif not line:  # state == "trailer": the empty line ends the body
                self._state = "done"
