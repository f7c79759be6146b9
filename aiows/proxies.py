"""The client's IP address: from the socket, or from proxy headers sent by a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Union

__all__ = ["TrustedProxies"]

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse_ip(value: str) -> str | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _forwarded_for(headers: Mapping[str, str]) -> list[str]:
    """Addresses from ``Forwarded`` (RFC 7239) or else ``X-Forwarded-For``, client first."""
    forwarded = headers.get("Forwarded")
    hops: list[str] = []
    if forwarded:
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.partition("=")
                if name.strip().lower() == "for":
                    hops.append(value)
        return hops
    x_forwarded_for = headers.get("X-Forwarded-For")
    return x_forwarded_for.split(",") if x_forwarded_for else []


class TrustedProxies:
    """Proxies whose ``X-Forwarded-For`` / ``Forwarded`` headers are believed.

    Give addresses or networks (``"10.0.0.1"``, ``"10.0.0.0/8"``). A request
    from anywhere else keeps the socket's address, whatever headers it sends.
    """

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        self.networks: list[_Network] = [ipaddress.ip_network(proxy, strict=False) for proxy in proxies]

    def trusts(self, ip: str) -> bool:
        """Whether ``ip`` is one of the trusted proxies."""
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_ip(self, peer_ip: str, headers: Mapping[str, str]) -> str:
        """The client's address: walk the proxy chain right to left while hops are trusted."""
        if not self.trusts(peer_ip):
            return peer_ip
        client = peer_ip
        for hop in reversed(_forwarded_for(headers)):
            ip = _parse_ip(hop)
            if ip is None:
                break
            client = ip
            if not self.trusts(ip):
                break
        return client
