"""Content-Coding decoders that never produce more than they are allowed to.

Every decoder takes a ``limit`` (the bytes still allowed under the response's decoded
size cap) and returns at most ``limit + 1`` bytes for one call, so a decompression bomb
is stopped after a bounded amount of work and memory instead of being inflated whole.
Getting more than ``limit`` back is how the caller learns the cap was crossed.
"""

from __future__ import annotations

import zlib
from typing import Any

from .exceptions import DecodeError

__all__ = ["SUPPORTED_ENCODINGS", "Decoder", "make_decoder"]

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is a test dependency
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]

SUPPORTED_ENCODINGS = (
    ("gzip", "deflate") + (("br",) if brotli else ()) + (("zstd",) if zstandard else ())
)


class Decoder:
    def decompress(self, data: bytes, limit: int) -> bytes:
        raise NotImplementedError

    def flush(self, limit: int) -> bytes:
        return b""


class _ZlibDecoder(Decoder):
    """gzip (possibly multi-member) or zlib-wrapped deflate, falling back to raw deflate."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._wbits = 16 + zlib.MAX_WBITS if mode == "gzip" else zlib.MAX_WBITS
        self._obj = zlib.decompressobj(self._wbits)
        self._first = True
        self._pending = b""

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._first and self._mode == "deflate" and data:
            self._first = False
            try:
                return self._run(data, limit)
            except zlib.error:
                # Some servers send raw deflate (RFC 1951) under "deflate".
                self._wbits = -zlib.MAX_WBITS
                self._obj = zlib.decompressobj(self._wbits)
        return self._run(data, limit)

    def _run(self, data: bytes, limit: int) -> bytes:
        data = self._obj.unconsumed_tail + data if self._obj.unconsumed_tail else data
        out = self._obj.decompress(data, limit + 1)
        while len(out) <= limit:
            if self._obj.unconsumed_tail:
                more = self._obj.decompress(self._obj.unconsumed_tail, limit + 1 - len(out))
                if not more:
                    break
                out += more
            elif self._obj.eof and self._obj.unused_data and self._mode == "gzip":
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(self._wbits)  # the next gzip member
                out += self._obj.decompress(rest, limit + 1 - len(out))
            else:
                break
        return out

    def flush(self, limit: int) -> bytes:
        if self._obj.unconsumed_tail:
            return self._run(b"", limit)
        return b""


class _BrotliDecoder(Decoder):
    def __init__(self) -> None:
        assert brotli is not None
        self._obj: Any = brotli.Decompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        out = self._obj.process(data, output_buffer_limit=limit + 1)
        while len(out) <= limit and not self._obj.can_accept_more_data():
            more = self._obj.process(b"", output_buffer_limit=limit + 1 - len(out))
            if not more:
                break
            out += more
        return bytes(out)


class _ZstdDecoder(Decoder):
    """zstandard's decompressobj has no output limit, so feed it small input slices.

    A zstd block of a few bytes can expand to 128 KiB, so the slice shrinks with what is
    left under the cap: the overshoot stays within about the cap itself.
    """

    def __init__(self) -> None:
        assert zstandard is not None
        self._obj: Any = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes, limit: int) -> bytes:
        parts = []
        size = 0
        step = max(32, min(4096, limit // 32768))
        for start in range(0, len(data), step):
            if self._obj.eof:
                # A new frame starts after the previous one (concatenated frames).
                self._obj = zstandard.ZstdDecompressor().decompressobj()
            piece = self._obj.decompress(data[start : start + step])
            parts.append(piece)
            size += len(piece)
            if size > limit:
                break
        return b"".join(parts)


def make_decoder(content_encoding: str) -> Decoder | None:
    """A decoder chain for a ``Content-Encoding`` value, or None when nothing to do."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoders: list[Decoder] = []
    for coding in codings:
        if coding in ("gzip", "x-gzip"):
            decoders.append(_ZlibDecoder("gzip"))
        elif coding == "deflate":
            decoders.append(_ZlibDecoder("deflate"))
        elif coding == "br" and brotli is not None:
            decoders.append(_BrotliDecoder())
        elif coding == "zstd" and zstandard is not None:
            decoders.append(_ZstdDecoder())
        elif coding == "identity":
            continue
        else:
            return None  # unknown coding: hand the bytes over as they came
    if not decoders:
        return None
    if len(decoders) == 1:
        return decoders[0]
    return _Chain(decoders[::-1])  # applied in reverse order of listing (RFC 9110 §8.4)


class _Chain(Decoder):
    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def decompress(self, data: bytes, limit: int) -> bytes:
        for decoder in self._decoders:
            data = decoder.decompress(data, limit)
        return data


def decode_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error]
    if brotli is not None:
        errors.append(brotli.error)
    if zstandard is not None:
        errors.append(zstandard.ZstdError)
    return tuple(errors)


DECODE_ERRORS = decode_errors()


def translate(exc: BaseException, encoding: str) -> DecodeError:
    return DecodeError(f"could not decode the body with Content-Encoding {encoding!r}: {exc}")
