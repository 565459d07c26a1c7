"""Small helpers around the pool: retry and timeout policies, URLs, headers, multipart."""

from __future__ import annotations

from .multipart import encode_multipart_formdata
from .request import make_headers
from .retry import Retry
from .timeout import Timeout
from .url import Url, parse_url

__all__ = ["Retry", "Timeout", "Url", "encode_multipart_formdata", "make_headers", "parse_url"]
