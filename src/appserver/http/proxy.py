"""Which peers may speak for a client (their headers are read by :mod:`appserver.http.forwarded`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of addresses and networks; ``"*"`` trusts everyone."""

    def __init__(
        self, entries: Iterable[str], family: str = "x-forwarded", host: bool = False
    ) -> None:
        # Which headers the proxies set: "x-forwarded" or "forwarded" (http/forwarded.py), and
        # whether they set (or strip) the host ones too.
        self.family = family
        self.host = host
        self.everyone = False
        self.hosts: set[str] = set()
        self.networks: list[_Network] = []
        for entry in entries:
            if entry == "*":
                self.everyone = True
            elif "/" in entry:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                self.hosts.add(str(ipaddress.ip_address(entry)))

    def __contains__(self, host: str) -> bool:
        if self.everyone or host in self.hosts:
            return True
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_host(self, forwarded_for: str) -> str | None:
        """The client named by X-Forwarded-For: the right-most address we do not trust.

        Each proxy appends the address it received from, so entries left of the first untrusted
        one (from the right) are the client's own claims and cannot be believed.
        """
        return self.client_address([item.strip() for item in forwarded_for.split(",")])

    def client_address(self, hosts: list[str]) -> str | None:
        """The right-most of ``hosts`` (a proxy chain, client first) that we do not trust;
        the left-most when every one is trusted."""
        hosts = [host for host in hosts if host]
        if not hosts:
            return None
        for host in reversed(hosts):
            if host not in self:
                return host
        return hosts[0]
