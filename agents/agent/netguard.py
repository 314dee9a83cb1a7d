"""SSRF protection for outbound requests made on behalf of a workflow (DESIGN §9).

A workflow author controls the URL of an ``http``/``notify`` action, so without a check the
agent would happily fetch cloud metadata (169.254.169.254), the control plane's admin port on
localhost, or anything on the agent's private network. Every address a host name resolves to
is therefore checked against a deny-list of non-public ranges before connecting, unless an
allow-list (the agent's ``SWITCHYARD_HTTP_ALLOW`` plus the claim's ``network_allow``) permits
it. The caller then connects to exactly the vetted address, never resolving the name a second
time, so a DNS answer that changes between check and use (DNS rebinding) cannot bypass it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger("switchyard.agent")

ENV_HTTP_ALLOW = "SWITCHYARD_HTTP_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_PATTERN = re.compile(
    r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)


class BlockedAddress(Exception):
    """The destination is not allowed by the network policy."""


class ResolutionError(Exception):
    """The host name could not be resolved."""


def deny_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or ``None`` if it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return deny_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    # Shared (CGNAT), documentation, benchmarking, 6to4/NAT64 internals…: not routable publicly.
    return None if address.is_global else "non-public"


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class NetworkPolicy:
    """Allow-list: networks (CIDRs or single addresses) and host names.

    A host entry matches that exact name; ``*.example.com`` matches its subdomains only.
    A host allowed by name may resolve to any address (the operator vouched for the name).
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> NetworkPolicy:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = _normalise_host(str(raw))
            if not entry:
                continue
            try:
                cidr = entry.replace("[", "").replace("]", "")
                networks.append(ipaddress.ip_network(cidr, strict=False))
                continue
            except ValueError:
                pass
            if not _HOST_PATTERN.fullmatch(entry):
                logger.warning("ignoring invalid network allow-list entry %r", raw)
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    @classmethod
    def for_job(cls, network_allow: Iterable[str] = ()) -> NetworkPolicy:
        """The agent's own ``$SWITCHYARD_HTTP_ALLOW`` (comma-separated) plus the claim's list."""
        from_env = os.environ.get(ENV_HTTP_ALLOW, "").split(",")
        return cls.from_entries([*from_env, *network_allow])

    def allows_host(self, host: str) -> bool:
        host = _normalise_host(host)
        return host in self.hosts or any(host.endswith(suffix) for suffix in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Raise ``BlockedAddress`` unless ``address`` is public or explicitly allowed."""
        reason = deny_reason(address)
        if reason is None or self.allows_address(address) or self.allows_host(host):
            return
        via = "" if str(address) == host else f"{host} resolves to "
        raise BlockedAddress(
            f"blocked: {via}{address}, a {reason} address not in the network allow-list"
        )


async def resolve_vetted(host: str, port: int, policy: NetworkPolicy) -> list[str]:
    """Resolve ``host`` and vet every address; returns the addresses to connect to, in order.

    Refuses the host if *any* address is denied: a name that resolves to both a public and a
    private address must not get a chance to reach the private one.
    """
    host = _normalise_host(host).strip("[]")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        policy.check_address(host, literal)
        return [str(literal)]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ResolutionError(f"cannot resolve {host} ({detail})") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        policy.check_address(host, address)
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise ResolutionError(f"cannot resolve {host} (no addresses)")
    return addresses
