"""Names pinned to addresses, like curl's ``--resolve``: which address to dial for a host.

``{"shop.example.com": "127.0.0.1", "*.example.com:8443": "127.0.0.2"}`` maps a host name,
optionally with a port, to the address the connection dials instead of asking DNS. The
name itself still goes everywhere else: the ``Host`` header, TLS SNI and the certificate
check. Patterns are shell globs on the lower-cased name (``fnmatch``, case-sensitive on
the already lowered text). The most specific entry wins: an exact name before a glob, a
rule with the port before one without, and among globs the longest pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

__all__ = ["pinned_address", "split_rule"]


def split_rule(rule: str) -> tuple[str, int | None]:
    """``"name:port"`` -> ``("name", port)``; ``"name"`` -> ``("name", None)``.

    A bare IPv6 literal in brackets keeps its colons: ``"[::1]:8443"``.
    """
    rule = rule.strip().lower()
    if rule.startswith("["):
        host, _, rest = rule[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif rule.count(":") == 1:
        host, _, port_text = rule.partition(":")
    else:
        host, port_text = rule, ""
    if not host:
        raise ValueError(f"resolve rule {rule!r} has no host name")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"resolve rule {rule!r} has a bad port")
        return host, int(port_text)
    return host, None


def pinned_address(resolve: Mapping[str, str], host: str, port: int) -> str | None:
    """The address ``host:port`` is pinned to by ``resolve``, or None to use DNS."""
    name = host.strip("[]").lower()
    best: tuple[int, int, int] | None = None
    found: str | None = None
    for rule, address in resolve.items():
        pattern, rule_port = split_rule(rule)
        if rule_port is not None and rule_port != port:
            continue
        exact = pattern == name
        if not exact and not fnmatchcase(name, pattern):
            continue
        rank = (int(exact), int(rule_port is not None), len(pattern))
        if best is None or rank > best:
            best, found = rank, address
    return found
