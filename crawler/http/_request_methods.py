"""``RequestMethods``: ``request``/``request_encode_url``/``request_encode_body`` over ``urlopen``.

Shared by the pools and the ``PoolManager``; each only needs ``urlopen`` and ``headers``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ._collections import HTTPHeaderDict
from .util.multipart import Fields, encode_multipart_formdata

if TYPE_CHECKING:
    from .response import HTTPResponse

__all__ = ["RequestMethods"]

_ENCODE_URL_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS"})


class RequestMethods:
    """Convenience methods that encode ``fields`` into the URL or the body."""

    headers: Mapping[str, str]

    def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> HTTPResponse:
        raise NotImplementedError

    def request(
        self,
        method: str,
        url: str,
        fields: Fields | None = None,
        headers: Mapping[str, str] | None = None,
        **urlopen_kw: Any,
    ) -> HTTPResponse:
        """``fields`` go into the query string for GET/HEAD/DELETE/OPTIONS, else the body."""
        if method.upper() in _ENCODE_URL_METHODS:
            return self.request_encode_url(
                method, url, fields=fields, headers=headers, **urlopen_kw
            )
        return self.request_encode_body(method, url, fields=fields, headers=headers, **urlopen_kw)

    def request_encode_url(
        self,
        method: str,
        url: str,
        fields: Fields | None = None,
        headers: Mapping[str, str] | None = None,
        **urlopen_kw: Any,
    ) -> HTTPResponse:
        """``urlopen`` with ``fields`` urlencoded into the query string."""
        if fields:
            items = fields.items() if isinstance(fields, Mapping) else fields
            url += ("&" if "?" in url else "?") + urlencode(list(items))
        return self.urlopen(method, url, headers=headers, **urlopen_kw)

    def request_encode_body(
        self,
        method: str,
        url: str,
        fields: Fields | None = None,
        headers: Mapping[str, str] | None = None,
        encode_multipart: bool = True,
        multipart_boundary: str | None = None,
        **urlopen_kw: Any,
    ) -> HTTPResponse:
        """``urlopen`` with ``fields`` in the body (multipart by default, else urlencoded).

        Without explicit ``headers`` the default headers are sent, with the body's
        ``Content-Type`` merged in.
        """
        if fields:
            if "body" in urlopen_kw:
                raise TypeError("request got values for both 'fields' and 'body'")
            merged = HTTPHeaderDict(self.headers if headers is None else headers)
            if encode_multipart:
                body, content_type = encode_multipart_formdata(fields, boundary=multipart_boundary)
            else:
                items = fields.items() if isinstance(fields, Mapping) else fields
                body = urlencode(list(items)).encode("ascii")
                content_type = "application/x-www-form-urlencoded"
            merged["Content-Type"] = content_type
            return self.urlopen(method, url, body=body, headers=merged, **urlopen_kw)
        return self.urlopen(method, url, headers=headers, **urlopen_kw)

    def get_url(self, url: str, fields: Fields | None = None, **urlopen_kw: Any) -> HTTPResponse:
        """Deprecated: use ``request("GET", url, fields=...)``."""
        warnings.warn(
            "get_url() is deprecated; use request('GET', url, fields=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.request_encode_url("GET", url, fields=fields, **urlopen_kw)

    def post_url(
        self,
        url: str,
        fields: Fields | None = None,
        headers: Mapping[str, str] | None = None,
        **urlopen_kw: Any,
    ) -> HTTPResponse:
        """Deprecated: use ``request("POST", url, fields=...)``."""
        warnings.warn(
            "post_url() is deprecated; use request('POST', url, fields=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.request_encode_body("POST", url, fields=fields, headers=headers, **urlopen_kw)
