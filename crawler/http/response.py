"""``HTTPResponse``: status, headers and a body that is preloaded, streamed or read.

A response read from one of our connections holds that connection (and so a pool slot)
until its body has been read to the end, or until ``release_conn()``/``close()``; at that
point the connection goes back to its pool if it can carry another request and is closed
otherwise. A response wrapping a stdlib ``http.client.HTTPResponse`` (``from_httplib``)
reads through it instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from ._collections import HTTPHeaderDict
from ._decoding import Decoder, decode_errors, make_decoder, translate
from ._protocol import Framer
from .exceptions import (
    BodyTooLargeError,
    HTTPError,
    ProtocolError,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    import http.client

    from .connection import HTTPConnection
    from .connectionpool import HTTPConnectionPool

__all__ = ["DEFAULT_MAX_DECODED_SIZE", "HTTPResponse"]

log = logging.getLogger("crawler.http")

DEFAULT_MAX_DECODED_SIZE = 100 * 2**20
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# How much of an unread body we read to keep a connection instead of closing it.
DRAIN_LIMIT = 64 * 1024
# A sized read decodes about max(amt, this) at a time, not all that the cap allows.
DECODE_STEP = 64 * 1024


class HTTPResponse:
    """One HTTP response, in the shape of urllib3's classic ``HTTPResponse``.

    Deliberately not an ``io.IOBase``: its finalizer would call ``close()`` from
    ``__del__`` and so call back into the pool from the garbage collector.
    """

    def __init__(
        self,
        body: bytes | None = b"",
        headers: HTTPHeaderDict | dict[str, str] | None = None,
        status: int = 0,
        version: int = 0,
        reason: str | None = None,
        preload_content: bool = True,
        decode_content: bool = True,
        original_response: http.client.HTTPResponse | None = None,
        pool: HTTPConnectionPool | None = None,
        connection: HTTPConnection | None = None,
        framer: Framer | None = None,
        keep_alive: bool = True,
        request_method: str | None = None,
        request_url: str | None = None,
        max_decoded_size: int | None = DEFAULT_MAX_DECODED_SIZE,
        enforce_content_length: bool = True,
        retries: Any = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        if isinstance(headers, HTTPHeaderDict):
            self.headers = headers
        else:
            self.headers = HTTPHeaderDict(headers)
        self.decode_content = decode_content
        self.retries = retries
        self.enforce_content_length = enforce_content_length
        self.max_decoded_size = max_decoded_size
        self._request_method = request_method
        self._request_url = request_url
        self._original_response = original_response
        self._pool = pool
        self._connection = connection
        self._framer = framer
        self._keep_alive = keep_alive
        self._body: bytes | None = None
        self._decoder: Decoder | None = None
        self._decoder_ready = False
        self._decoded = 0
        self._pending = bytearray()
        self._raw_done = connection is None and original_response is None
        self._closed_flag = False
        self._lease = 0
        if body:
            self._body = body
        if preload_content and not self._raw_done and self._body is None:
            self._body = self.read(decode_content=decode_content)

    @classmethod
    def _from_head(
        cls,
        head: Any,
        connection: HTTPConnection,
        pool: HTTPConnectionPool,
        method: str,
        url: str,
        preload_content: bool,
        decode_content: bool,
        max_decoded_size: int | None,
        enforce_content_length: bool,
        retries: Any,
    ) -> HTTPResponse:
        """The pool's fast path: no keyword juggling, preload inline."""
        self = cls.__new__(cls)
        self.status = head.status
        self.reason = head.reason
        self.version = head.version
        self.headers = head.headers
        self.decode_content = decode_content
        self.retries = retries
        self.enforce_content_length = enforce_content_length
        self.max_decoded_size = max_decoded_size
        self._request_method = method
        self._request_url = url
        self._original_response = None
        self._pool = pool
        self._connection = connection
        framer = head.framer
        self._framer = framer
        self._keep_alive = head.keep_alive
        self._body = None
        self._decoder = None
        self._decoder_ready = False
        self._decoded = 0
        self._pending = bytearray()
        self._closed_flag = False
        self._lease = 0
        if framer.done:
            self._raw_done = True
            self._body = b"" if preload_content else None
            self._release_done()
            return self
        self._raw_done = False
        if preload_content:
            self._preload()
        return self

    def _preload(self) -> None:
        """Read the whole body now; the connection goes back (or is dropped) at once."""
        if self._raw_done:
            if self._body is None:
                self._body = b""
            return
        if self.decode_content and "content-encoding" in self.headers:
            self._body = self.read(decode_content=True)
            return
        conn, framer = self._connection, self._framer
        assert conn is not None and framer is not None
        cap = self.max_decoded_size
        left = framer.remaining
        if cap is not None and (left is None or left > cap):
            if left is not None:
                self._too_large(cap)
            self._body = self.read(decode_content=False)
            return
        try:
            # Identity body: received in place in one go.
            self._body = conn.read_body_all(framer)
        except BaseException:
            self._discard()
            raise
        self._raw_done = True
        self._release_done()

    @classmethod
    def from_httplib(cls, r: http.client.HTTPResponse, **response_kw: Any) -> HTTPResponse:
        """Wrap a stdlib ``http.client.HTTPResponse`` (its body is read through it)."""
        headers = HTTPHeaderDict(r.getheaders())
        return cls(
            body=None,
            headers=headers,
            status=r.status,
            version=r.version,
            reason=r.reason,
            original_response=r,
            **response_kw,
        )

    def __repr__(self) -> str:
        held = "holding its connection" if self._connection is not None else "released"
        return f"<HTTPResponse {self.status} {self.reason!r} {held}>"

    # --- headers -----------------------------------------------------------------------------

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def getheaders(self) -> HTTPHeaderDict:
        return self.headers

    def info(self) -> HTTPHeaderDict:
        return self.headers

    def get_redirect_location(self) -> str | bool | None:
        """The ``Location`` of a redirect, ``None`` if it has none, ``False`` if no redirect."""
        if self.status in REDIRECT_STATUSES:
            return self.headers.get("location")
        return False

    @property
    def connection(self) -> HTTPConnection | None:
        return self._connection

    @property
    def url(self) -> str | None:
        return self._request_url

    # --- body --------------------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """The whole (decoded) body, read now if it was not preloaded."""
        if self._body is not None:
            return self._body
        if not self._raw_done:
            self._body = self.read(decode_content=self.decode_content)
            return self._body
        return b""

    def json(self) -> Any:
        return json.loads(self.data.decode("utf-8"))

    def _raw_read(self, amt: int, partial: bool = False) -> bytes:
        """Up to ``amt`` raw (still encoded) body bytes; ``b""`` at the end.

        From our own connection this returns what one socket read brings; a wrapped stdlib
        response reads ``amt`` in full unless ``partial``.
        """
        if self._raw_done:
            return b""
        fp = self._original_response
        try:
            if fp is not None:
                # Loaded already by whoever made ``fp``; imported here, not with the package,
                # because http.client loads ssl.
                import http.client

                try:
                    data = fp.read1(amt) if partial else fp.read(amt)
                except http.client.IncompleteRead as exc:
                    raise ProtocolError(f"response body ended early: {exc!r}") from exc
                except TimeoutError as exc:
                    raise ReadTimeoutError(f"read timed out: {exc}") from exc
                except (http.client.HTTPException, OSError) as exc:
                    raise ProtocolError(f"error reading the response body: {exc!r}") from exc
            else:
                conn, framer = self._connection, self._framer
                if conn is None or framer is None:
                    return b""
                data = conn.read_body(framer, amt)
        except BaseException:
            self._raw_done = True
            self._discard()
            raise
        if not data:
            self._raw_done = True
            self._release_done()
        return data

    def _get_decoder(self) -> Decoder | None:
        if not self._decoder_ready:
            self._decoder_ready = True
            encoding = self.headers.get("content-encoding")
            if encoding:
                self._decoder = make_decoder(encoding)
        return self._decoder

    def _decode(self, data: bytes, want: int | None = None) -> bytes:
        """Decode ``data`` (or, given none, input the decoder held back) to about ``want``
        bytes at most; everything the cap allows when ``want`` is None."""
        decoder = self._get_decoder()
        if decoder is None:
            return data
        cap = self.max_decoded_size
        limit = (1 << 62) if cap is None else cap - self._decoded
        if want is not None and want < limit:
            limit = want
        try:
            out = decoder.decompress(data, limit) if data else decoder.flush(limit)
        except decode_errors() as exc:
            self._discard()
            raise translate(exc, self.headers.get("content-encoding", "")) from exc
        self._decoded += len(out)
        if cap is not None and self._decoded > cap:
            self._too_large(cap)
        return out

    def _too_large(self, cap: int) -> NoReturn:
        self._discard()
        encoding = self.headers.get("content-encoding") or "identity"
        raise BodyTooLargeError(
            f"body exceeds max_decoded_size={cap} bytes (Content-Encoding {encoding!r}); "
            "raise max_decoded_size if this is expected"
        )

    def _held(self) -> bool:
        """Whether the decoder still holds input that it has not decoded yet."""
        decoder = self._decoder
        return decoder is not None and decoder.pending

    def read(
        self,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        """Read up to ``amt`` bytes of the body (all of it when ``amt`` is None)."""
        if decode_content is None:
            decode_content = self.decode_content
        if amt is not None and amt < 0:
            amt = None
        if self._raw_done and not self._pending and not self._held():
            return b""
        decoding = decode_content and self._get_decoder() is not None
        if amt is None:
            parts = [bytes(self._pending)]
            self._pending.clear()
            cap = self.max_decoded_size
            total = len(parts[0])
            decoder = self._decoder
            while True:
                if decoding:
                    assert decoder is not None
                    if decoder.pending:
                        parts.append(self._decode(b""))
                        continue
                raw = self._raw_read(1 << 20 if not decoding else 1 << 16)
                if not raw:
                    break
                if decoding:
                    parts.append(self._decode(raw))
                else:
                    parts.append(raw)
                    total += len(raw)
                    if cap is not None and total > cap:
                        self._too_large(cap)
            data = b"".join(parts)
            if cache_content:
                self._body = data
            return data
        if not decoding:
            if self._pending:
                data = bytes(self._pending[:amt])
                del self._pending[:amt]
                return data
            data = self._raw_read(amt)
            if len(data) < amt and data:
                parts = [data]
                got = len(data)
                while got < amt and (more := self._raw_read(amt - got)):
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        pending = self._pending
        decoder = self._decoder
        assert decoder is not None
        want = max(amt, DECODE_STEP)
        while len(pending) < amt:
            if decoder.pending:
                pending += self._decode(b"", want)
            elif self._raw_done:
                break
            elif raw := self._raw_read(max(amt, 1 << 14)):
                pending += self._decode(raw, want)
        data = bytes(pending[:amt])
        del pending[:amt]
        return data

    def read1(self, amt: int = 2**16, decode_content: bool | None = None) -> bytes:
        """Up to ``amt`` bytes of the body, as soon as any are there (``b""`` at the end).

        Unlike ``read(amt)``, which waits until it has ``amt`` bytes, this returns what one
        socket read brings (more reads only when they decode to nothing yet), so a streaming
        consumer sees a slow body as it arrives and can check its own clock in between.
        """
        if decode_content is None:
            decode_content = self.decode_content
        if amt <= 0:
            amt = 2**16
        pending = self._pending
        if not pending:
            if self._raw_done and not self._held():
                return b""
            decoder = self._get_decoder() if decode_content else None
            if decoder is None:
                return self._raw_read(amt, partial=True)
            want = max(amt, DECODE_STEP)
            while not pending:
                if decoder.pending:
                    pending += self._decode(b"", want)
                elif self._raw_done:
                    break
                elif raw := self._raw_read(max(amt, 1 << 14), partial=True):
                    pending += self._decode(raw, want)
        data = bytes(pending[:amt])
        del pending[:amt]
        return data

    def stream(
        self, amt: int | None = 2**16, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``amt`` bytes until it ends."""
        while not (self._raw_done and not self._pending and not self._held()):
            data = self.read(amt=amt, decode_content=decode_content)
            if data:
                yield data
            elif self._raw_done:
                return  # an undecoded read cannot empty what the decoder holds

    def __iter__(self) -> Iterator[bytes]:
        return self.stream()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    # --- the connection --------------------------------------------------------------------

    def _release_done(self) -> None:
        """The body ended: return a reusable connection to its pool."""
        conn, self._connection = self._connection, None
        if conn is None:
            return
        pool = self._pool
        if not self._keep_alive or conn._buf:
            conn.close()
            conn = None
        if pool is not None:
            pool._put_conn(conn, self._lease)
        elif conn is not None:
            conn.close()

    def _discard(self) -> None:
        """Close the connection (it cannot be reused) and give its slot back."""
        conn, self._connection = self._connection, None
        fp, self._original_response = self._original_response, None
        self._raw_done = True
        self._decoder = None  # and whatever input it still held
        if fp is not None:
            fp.close()
        if conn is None:
            return
        conn.close()
        if self._pool is not None:
            self._pool._put_conn(None, self._lease)

    def release_conn(self) -> None:
        """Give the connection back now; an unread body means it is closed, not reused.

        (When the rest of the body is already in the receive buffer it is dropped and the
        connection reused: that costs nothing and saves a reconnect.)
        """
        if self._connection is None:
            return
        if not self._raw_done:
            self._skip_buffered_rest()
        if self._raw_done:
            self._release_done()
        else:
            self._discard()

    def _skip_buffered_rest(self) -> None:
        conn, framer = self._connection, self._framer
        if conn is None or framer is None or self._original_response is not None:
            return
        left = framer.remaining
        if left is not None and left <= len(conn._buf):
            framer.take(conn._buf, left)
            if framer.done:
                self._raw_done = True
                self._pending.clear()
                self._decoder = None

    def drain_conn(self) -> None:
        """Read and drop a small rest of the body so the connection can be reused."""
        if self._connection is None or self._raw_done:
            self.release_conn()
            return
        try:
            left = self._framer.remaining if self._framer is not None else None
            if left is not None and left > DRAIN_LIMIT:
                self._discard()
                return
            read = 0
            while not self._raw_done and read <= DRAIN_LIMIT:
                read += len(self._raw_read(DRAIN_LIMIT))
        except (HTTPError, OSError):
            pass
        self.release_conn()

    def close(self) -> None:
        """Close the response: its connection is dropped and its slot returned."""
        if not self._closed_flag:
            self._closed_flag = True
            if self._connection is not None:
                self.release_conn()
            if self._original_response is not None:
                self._original_response.close()

    @property
    def closed(self) -> bool:
        return self._closed_flag

    def __enter__(self) -> HTTPResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tell(self) -> int:
        return self._decoded
