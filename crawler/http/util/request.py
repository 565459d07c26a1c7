"""``make_headers`` and the small helpers that shape what a request sends."""

from __future__ import annotations

from base64 import b64encode

__all__ = ["make_headers"]


def make_headers(
    keep_alive: bool | None = None,
    accept_encoding: bool | list[str] | str | None = None,
    user_agent: str | None = None,
    basic_auth: str | None = None,
    proxy_basic_auth: str | None = None,
) -> dict[str, str]:
    """Shortcuts for common request headers, as a plain dict with lower-case names.

    >>> make_headers(keep_alive=True, user_agent="Batman/1.0")
    {'connection': 'keep-alive', 'user-agent': 'Batman/1.0'}
    >>> make_headers(accept_encoding=True)
    {'accept-encoding': 'gzip,deflate'}
    """
    headers: dict[str, str] = {}
    if accept_encoding:
        if isinstance(accept_encoding, str):
            value = accept_encoding
        elif isinstance(accept_encoding, list):
            value = ",".join(accept_encoding)
        else:
            value = "gzip,deflate"
        headers["accept-encoding"] = value
    if user_agent:
        headers["user-agent"] = user_agent
    if keep_alive:
        headers["connection"] = "keep-alive"
    if basic_auth:
        headers["authorization"] = "Basic " + b64encode(basic_auth.encode("latin-1")).decode()
    if proxy_basic_auth:
        token = b64encode(proxy_basic_auth.encode("latin-1")).decode()
        headers["proxy-authorization"] = "Basic " + token
    return headers
