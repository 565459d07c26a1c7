"""``encode_multipart_formdata``: a ``multipart/form-data`` body (RFC 7578) and its type."""

from __future__ import annotations

import binascii
import mimetypes
import os
from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = ["choose_boundary", "encode_multipart_formdata"]

FieldValue: TypeAlias = str | bytes | tuple[str, str | bytes] | tuple[str, str | bytes, str]
Fields: TypeAlias = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]


def choose_boundary() -> str:
    """A random boundary: 32 hex digits are long enough never to collide with the data."""
    return binascii.hexlify(os.urandom(16)).decode("ascii")


def _quote(value: str) -> str:
    # RFC 7578 §4.2: a quoted-string; escape the characters that would end it early.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_multipart_formdata(fields: Fields, boundary: str | None = None) -> tuple[bytes, str]:
    """Encode ``fields`` as ``multipart/form-data``; return ``(body, content_type)``.

    A value is ``str``/``bytes``, or a ``(filename, data)`` or ``(filename, data, mimetype)``
    tuple; without a mimetype one is guessed from the filename.
    """
    if boundary is None:
        boundary = choose_boundary()
    if any(c in boundary for c in '\r\n"') or not boundary:
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    items = fields.items() if isinstance(fields, Mapping) else fields
    delimiter = f"--{boundary}\r\n".encode()
    parts: list[bytes] = []
    for name, value in items:
        filename: str | None = None
        content_type: str | None = None
        if isinstance(value, tuple):
            if len(value) == 3:
                filename, data, content_type = value
            else:
                filename, data = value
                content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        else:
            data = value
        disposition = f'form-data; name="{_quote(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quote(filename)}"'
        head = f"Content-Disposition: {disposition}\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(delimiter)
        parts.append(head.encode("utf-8") + b"\r\n")
        parts.append(data.encode("utf-8") if isinstance(data, str) else bytes(data))
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
