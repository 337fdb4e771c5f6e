"""The operator's device networks: addresses that are machine data, not personal data."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

__all__ = ["NON_SOURCE_NETWORKS", "IpNetwork", "parse_device_networks"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
"""An IPv4 or IPv6 network."""

NON_SOURCE_NETWORKS: Final[tuple[IpNetwork, ...]] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network" (RFC 791, 1122)
        "127.0.0.0/8",  # loopback: never leaves the host
        "224.0.0.0/4",  # multicast (RFC 5771): never a source
        "240.0.0.0/4",  # reserved (RFC 1112), with the limited broadcast 255.255.255.255
        "::/128",  # unspecified (RFC 4291)
        "::1/128",  # loopback
        "ff00::/8",  # multicast
    )
)
"""Addresses that identify no host a person uses: RFC 6890's special-purpose ranges
that are not valid as a source address or never leave the host. Link-local
addresses are *not* in the list: a modified EUI-64 ``fe80::`` address embeds the
interface's MAC address (RFC 4291, appendix A)."""


def parse_device_networks(values: Iterable[str | IpNetwork]) -> tuple[IpNetwork, ...]:
    """Parse the operator's device networks (CIDR notation).

    Args:
        values: networks such as ``"10.0.0.0/8"``, ``"2001:db8:42::/48"`` or a single
            address (``"192.0.2.10"``, a /32 or /128).

    Returns:
        The networks, in input order.

    Raises:
        ValueError: a value is not a network, or has host bits set (``10.1.2.3/8``:
            the message names the value and the network it probably means).
    """
    out: list[IpNetwork] = []
    for i, value in enumerate(values):
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            out.append(value)
            continue
        text = str(value).strip()
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            hint = ""
            try:
                loose = ipaddress.ip_network(text, strict=False)
                hint = f"; it has host bits set, did you mean {loose}?"
            except ValueError:
                hint = " (use CIDR notation, e.g. 10.0.0.0/8 or 2001:db8::/32)"
            raise ValueError(
                f"device network #{i} {text!r} is not an IP network{hint} ({exc})"
            ) from exc
    return tuple(out)
