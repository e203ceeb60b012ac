"""What a trusted proxy says about the client: X-Forwarded-* or RFC 7239 ``Forwarded``.

The policy, one rule: **only the family the proxy is configured to set is read**
(``proxy.family``: ``"x-forwarded"``, the default and what nginx, HAProxy and most load
balancers send, or ``"forwarded"``). A proxy passes on the headers it does not set itself, so
reading both would let a client smuggle a value through the family the proxy leaves alone:
``Forwarded: for=10.0.0.1`` past an nginx that only appends X-Forwarded-For. The other family
is left in the headers for the app, untouched and unbelieved.

The host and port the client asked for (X-Forwarded-Host/-Port, Forwarded ``host=``) are read
only with ``proxy.host = true``: nginx's usual configuration sets X-Forwarded-For and -Proto
and passes a client's X-Forwarded-Host on untouched, which would let the client choose the
Host the app builds its links from.

Within a family, each proxy appends what it saw: the client is the right-most address that is
not itself a trusted proxy (entries further left are claims nobody we trust vouched for). The
scheme, host and port come from the right-most value, the one our peer wrote.
"""

from __future__ import annotations

from typing import Final

from appserver.http.proxy import TrustedProxies

X_FORWARDED: Final = frozenset(
    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port")
)
FORWARDED: Final = frozenset((b"forwarded",))
PROXY_FIELDS: Final = X_FORWARDED | FORWARDED

_SCHEMES: Final = frozenset(("http", "https", "ws", "wss"))


def _last(value: bytes) -> str:
    return value.decode("latin-1").rsplit(",", 1)[-1].strip()


def _node_host(node: str) -> str | None:
    """An RFC 7239 §6 node ("192.0.2.1", "[2001:db8::1]:80", "_hidden", "unknown") as an
    address, or None for an obfuscated or unknown one."""
    node = node.strip().strip('"')
    if node.startswith("["):
        host, _, _ = node[1:].partition("]")
        return host or None
    host = node.rsplit(":", 1)[0] if node.count(":") == 1 else node
    if not host or host == "unknown" or host.startswith("_"):
        return None
    return host


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4: comma-separated elements of ``;``-separated ``name=value`` pairs (names
    case-insensitive, values tokens or quoted strings). Malformed pairs are skipped."""
    elements = []
    for element in _split(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split(element, ";"):
            name, sep, item = pair.partition("=")
            if not sep:
                continue
            item = item.strip()
            if len(item) >= 2 and item[0] == item[-1] == '"':
                item = item[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            pairs[name.strip().lower()] = item
        elements.append(pairs)
    return elements


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings (an IPv6 "for" is quoted and holds colons;
    a quoted value may hold commas)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def apply_forwarded(
    proxy: TrustedProxies,
    fields: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    scheme: str,
    server: tuple[str, int | None] | None,
    headers: list[tuple[bytes, bytes]],
) -> tuple[tuple[str, int] | None, str, tuple[str, int | None] | None, list[tuple[bytes, bytes]]]:
    """The client, scheme, server and headers of a request whose peer is a trusted proxy,
    from its proxy ``fields`` (name, value) in order. The ``host`` header is replaced when the
    proxy names the host the client asked for (X-Forwarded-Host, Forwarded host=)."""
    host: str | None = None
    port: int | None = None
    if proxy.family == "forwarded":
        joined = ",".join(v.decode("latin-1") for n, v in fields if n == b"forwarded")
        elements = parse_forwarded(joined)
        if not elements:
            return client, scheme, server, headers
        # From the right, past the trusted proxies; the first element that is not one names
        # the client. An element without a usable address there (for=unknown, an obfuscated
        # _node, no for at all) stops the walk too: what lies left of it nobody vouched for,
        # so the connection's own peer stands.
        for element in reversed(elements):
            node = _node_host(element["for"]) if "for" in element else None
            if node is not None and node in proxy:
                continue
            if node is not None:
                client = (node, 0)
            break
        nearest = elements[-1]
        proto = nearest.get("proto", "").lower()
        if proto in _SCHEMES:
            scheme = proto
        host = (nearest.get("host") or None) if proxy.host else None
    else:
        forwarded_for = proto_value = host_value = port_value = None
        for name, value in fields:
            if name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                proto_value = value
            elif name == b"x-forwarded-host":
                host_value = value
            elif name == b"x-forwarded-port":
                port_value = value
        if proto_value is not None:
            proto = _last(proto_value).lower()
            if proto in _SCHEMES:
                scheme = proto
        if forwarded_for is not None:
            found = proxy.client_host(forwarded_for.decode("latin-1"))
            if found is not None:
                client = (found, 0)
        if host_value is not None and proxy.host:
            host = _last(host_value) or None
        if port_value is not None and proxy.host:
            text = _last(port_value)
            if _is_port(text):
                port = int(text)
    if host is None and port is None:
        return client, scheme, server, headers
    return client, scheme, *_with_host(host, port, scheme, server, headers)


def _split_host(text: str) -> tuple[str, int | None]:
    """``"example.com:8443"`` as ("example.com", 8443); ``"[::1]"`` as ("[::1]", None)."""
    if text.startswith("["):
        name, _, rest = text.partition("]")
        name += "]"
    else:
        name, _, rest = text.partition(":") if text.count(":") == 1 else (text, "", "")
        rest = ":" + rest if rest else ""
    port = rest.lstrip(":")
    return name, int(port) if _is_port(port) else None


def _is_port(text: str) -> bool:
    # isascii: "²".isdigit() is true and int("²") raises.
    return text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536


def _with_host(
    host: str | None,
    port: int | None,
    scheme: str,
    server: tuple[str, int | None] | None,
    headers: list[tuple[bytes, bytes]],
) -> tuple[tuple[str, int | None] | None, list[tuple[bytes, bytes]]]:
    if host is None:  # only a port was forwarded: the client's own host name, that port
        host = next((v.decode("latin-1") for n, v in headers if n == b"host"), None)
        if host is None:
            return server, headers
    name, given = _split_host(host.strip())
    if not name or any(c in name for c in "\r\n\x00\t /\\@?#"):
        return server, headers  # not a host name: keep what the request itself said
    default = 443 if scheme in ("https", "wss") else 80
    if port is None:
        port = given if given is not None else default
    value = name if port == default else f"{name}:{port}"
    replaced = [(b"host", value.encode("latin-1"))]
    replaced += [(n, v) for n, v in headers if n != b"host"]
    return (name.strip("[]"), port), replaced
