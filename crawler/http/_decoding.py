"""Content-Coding decoders that never produce much more than they are asked for.

Every call takes a ``limit`` and returns at most about ``limit + 1`` bytes (zlib exactly;
brotli may add one 32 KiB internal buffer; zstd one small input slice's worth). Compressed
input that would decode past that stays inside the decoder (zlib's ``unconsumed_tail``,
brotli's own buffer, a slice offset for zstd) and ``pending`` says so: ``flush(limit)``
continues with it, and new input must wait until ``pending`` is false. So a read can ask
for what it needs (a few times its ``amt``) and a decompression bomb is inflated one
bounded step at a time instead of whole. Getting more than the size cap back is how the
caller learns the cap was crossed.
"""

from __future__ import annotations

import sys
import zlib
from importlib.util import find_spec
from typing import Any

from .exceptions import DecodeError

__all__ = ["SUPPORTED_ENCODINGS", "Decoder", "make_decoder"]

# brotli and zstandard are optional, and imported by the first response that needs them:
# most sites answer gzip or nothing, and zstandard alone costs about 9 ms of start-up and
# 1 MB in every process. Whether they are installed is known without importing them.
_HAVE_BROTLI = find_spec("brotli") is not None
_HAVE_ZSTD = find_spec("zstandard") is not None

SUPPORTED_ENCODINGS = (
    ("gzip", "deflate") + (("br",) if _HAVE_BROTLI else ()) + (("zstd",) if _HAVE_ZSTD else ())
)


class Decoder:
    # True while input already given may still decode to more output.
    pending = False

    def decompress(self, data: bytes, limit: int) -> bytes:
        raise NotImplementedError

    def flush(self, limit: int) -> bytes:
        """Continue with input held back by an earlier call (``b""`` when there is none)."""
        return self.decompress(b"", limit) if self.pending else b""


class _ZlibDecoder(Decoder):
    """gzip (possibly multi-member) or zlib-wrapped deflate, falling back to raw deflate."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._wbits = 16 + zlib.MAX_WBITS if mode == "gzip" else zlib.MAX_WBITS
        self._obj = zlib.decompressobj(self._wbits)
        self._first = True

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
        obj = self._obj
        out = b""
        first = True
        while len(out) <= limit:
            if obj.eof:
                # What follows a gzip member is the next one; after deflate, ignored.
                # (unused_data, not unconsumed_tail, holds the rest once eof is set.)
                rest = obj.unused_data
                if self._mode != "gzip" or not (rest or data):
                    break
                obj = self._obj = zlib.decompressobj(self._wbits)
                data = rest + data
            elif obj.unconsumed_tail:
                data = obj.unconsumed_tail + data
            elif not data and not first:
                break
            first = False
            more = obj.decompress(data, limit + 1 - len(out))
            data = b""
            out += more
            if not more and not obj.eof and not obj.unconsumed_tail:
                break
        # A full output buffer can leave output inside zlib (a match cut short) even with
        # no unconsumed_tail: one more call finds out.
        self.pending = len(out) > limit or (not obj.eof and bool(obj.unconsumed_tail))
        return out


class _BrotliDecoder(Decoder):
    """brotli keeps the input it could not decode yet and refuses more until it has."""

    def __init__(self) -> None:
        import brotli

        self._obj: Any = brotli.Decompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        obj = self._obj
        out = obj.process(data, output_buffer_limit=limit + 1)
        while len(out) <= limit and not obj.can_accept_more_data():
            more = obj.process(b"", output_buffer_limit=limit + 1 - len(out))
            if not more:
                break
            out += more
        self.pending = not obj.can_accept_more_data() or (
            len(out) > limit and not obj.is_finished()
        )
        if self.pending and not data and not out:
            raise sys.modules["brotli"].error("brotli: the decoder makes no progress")
        return bytes(out)


class _ZstdDecoder(Decoder):
    """zstandard's decompressobj has no output limit, so feed it small input slices.

    A zstd block of a few bytes can expand to 128 KiB, so a slice is sized from the ratio
    the previous one showed and never longer than ``limit / 32 KiB`` (256 bytes at least):
    the overshoot past ``limit`` stays within about ``limit`` and 8 MiB.
    """

    def __init__(self) -> None:
        import zstandard

        self._new: Any = zstandard.ZstdDecompressor
        self._obj: Any = self._new().decompressobj()
        self._held = b""
        self._pos = 0
        self._step = 64

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._pos < len(self._held):
            data = self._held[self._pos :] + data
        view = memoryview(data)
        end = len(data)
        pos = 0
        parts = []
        size = 0
        step = self._step
        most = max(256, min(1 << 16, limit >> 15))
        while pos < end and size <= limit:
            chunk = view[pos : pos + step]
            pos += len(chunk)
            piece = self._obj.decompress(chunk)
            if self._obj.eof:
                # A new frame may follow (concatenated frames): it starts where this ended.
                pos -= len(self._obj.unused_data)
                self._obj = self._new().decompressobj()
            if piece:
                parts.append(piece)
                size += len(piece)
                # Aim the next slice at what is still wanted, by the ratio just seen.
                step = (limit + 1 - size) * len(chunk) // len(piece)
            else:
                step *= 2
            step = max(8, min(most, step))
        self._step = step
        self._held = data
        self._pos = pos
        self.pending = pos < end
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
        elif coding == "br" and _HAVE_BROTLI:
            decoders.append(_BrotliDecoder())
        elif coding == "zstd" and _HAVE_ZSTD:
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
    """Decoders applied in turn; a stage pulls from the one before only once it is empty."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def decompress(self, data: bytes, limit: int) -> bytes:
        out = self._pull(len(self._decoders) - 1, data, limit)
        self.pending = any(decoder.pending for decoder in self._decoders)
        return out

    def _pull(self, index: int, data: bytes, limit: int) -> bytes:
        decoder = self._decoders[index]
        if index == 0:
            return decoder.decompress(data, limit)
        if decoder.pending and not data:
            return decoder.flush(limit)
        return decoder.decompress(self._pull(index - 1, data, limit), limit)


def decode_errors() -> tuple[type[BaseException], ...]:
    """The decoding libraries' errors: of those loaded, since only a loaded one can raise.

    Called in an ``except`` clause, so only when something was raised."""
    errors: list[type[BaseException]] = [zlib.error]
    if (brotli := sys.modules.get("brotli")) is not None:
        errors.append(brotli.error)
    if (zstandard := sys.modules.get("zstandard")) is not None:
        errors.append(zstandard.ZstdError)
    return tuple(errors)


def translate(exc: BaseException, encoding: str) -> DecodeError:
    return DecodeError(f"could not decode the body with Content-Encoding {encoding!r}: {exc}")
