"""Which local addresses ICE may offer as host candidates.

aioice gathers host candidates from every interface except loopback, and offers no
per-connection option to change that: `aioice.ice.get_host_addresses` is looked up at call
time by `Connection.gather_candidates`, so this module replaces that one function. The
allow-list is process-wide because the function is; a process that runs a gateway and
simulators (the tests, the demo) gives them the same list.

An allow-list entry is an interface name (``eth0``), an address (``127.0.0.1``, ``::1``)
or a network (``10.20.0.0/16``). An empty list restores aioice's own behaviour.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

import aioice.ice
import ifaddr

from ..config import parse_allow_entry

logger = logging.getLogger(__name__)

_aioice_default = aioice.ice.get_host_addresses


def host_addresses(allow: Sequence[str], use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """The local addresses that match the allow-list, in the order the system lists them."""
    rules = [parse_allow_entry(entry) for entry in allow]
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                if not use_ipv4:
                    continue
                text = ip.ip
            else:
                # Link-local IPv6 needs a scope id that aioice does not carry: skip it.
                if not use_ipv6 or ip.ip[2] != 0:
                    continue
                text = ip.ip[0]
            address = ipaddress.ip_address(text)
            for rule in rules:
                if (isinstance(rule, str) and rule == adapter.nice_name) or (
                    not isinstance(rule, str) and address in rule
                ):
                    found.append(text)
                    break
    return found


def restrict_host_candidates(allow: Sequence[str]) -> list[str]:
    """Make every ICE agent in this process offer only the allowed addresses.

    Returns the addresses that match now, and raises ValueError when the list is not empty
    but matches no local address (a gateway that offers no candidate cannot be reached).
    """
    allow = list(allow)
    if not allow:
        aioice.ice.get_host_addresses = _aioice_default
        return _aioice_default(True, True)
    matched = host_addresses(allow)
    if not matched:
        raise ValueError(f"ICE allow-list {allow} matches no local address")

    def allowed_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return host_addresses(allow, use_ipv4, use_ipv6)

    aioice.ice.get_host_addresses = allowed_host_addresses
    logger.info("ICE host candidates restricted to %s", ", ".join(matched))
    return matched
