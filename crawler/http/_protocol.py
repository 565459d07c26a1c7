"""HTTP/1.1 on bytes, without I/O: request heads out, response heads and body framing in.

How this works: the connection keeps one receive ``bytearray``. Once it holds a blank
line, :func:`parse_head` turns the head (as bytes) into a :class:`ResponseHead`, which
also decides the body framing (RFC 9112 §6.3). A *framer* then takes body bytes off the
front of that same buffer (``take``) and is told when the peer closed (``at_eof``); a body
that ends early or breaks the chunked grammar raises :class:`ProtocolError` rather than
being truncated silently. Nothing here touches a socket.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from urllib.parse import quote

from ._collections import HTTPHeaderDict
from .exceptions import HeaderInjectionError, ProtocolError

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_LINE_BYTES",
    "ChunkedFramer",
    "ContentLengthFramer",
    "Framer",
    "NoBodyFramer",
    "ResponseHead",
    "UntilCloseFramer",
    "build_request_head",
    "parse_head",
]

MAX_LINE_BYTES = 64 * 1024
MAX_HEAD_BYTES = 256 * 1024
MAX_HEADERS = 200
MAX_CHUNK_LINE = 4096
MAX_TRAILER_BYTES = 64 * 1024

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_HEX = re.compile(r"[0-9A-Fa-f]{1,16}")


# --- requests ------------------------------------------------------------------------------


def check_header(name: str, value: str) -> None:
    """Refuse a field that would break out of its line (header injection)."""
    if not _TOKEN.fullmatch(name):
        raise HeaderInjectionError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise HeaderInjectionError(f"header {name!r} value contains CR, LF or NUL: {value!r}")


def header_block(headers: Mapping[str, str]) -> tuple[str, frozenset[str]]:
    """Validate ``headers`` into ``"Name: value\\r\\n"`` lines plus the lower-cased names."""
    lines = []
    names = set()
    items = headers.iteritems() if isinstance(headers, HTTPHeaderDict) else headers.items()
    for name, value in items:
        if not isinstance(value, str):
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        check_header(name, value)
        lines.append(f"{name}: {value}\r\n")
        names.add(name.lower())
    return "".join(lines), frozenset(names)


def request_target(target: str) -> str:
    """Check a request target; percent-encode non-ASCII, refuse spaces and controls."""
    if _BAD_TARGET.search(target):
        raise HeaderInjectionError(f"request target contains whitespace or controls: {target!r}")
    if not target.isascii():
        target = quote(target, safe="".join(chr(c) for c in range(0x21, 0x7F)))
    return target


def build_request_head(
    method: str,
    target: str,
    host_line: str,
    block: str,
    names: frozenset[str],
    extra_defaults: str,
    body_length: int | None,
    chunked: bool,
) -> bytes:
    """The request head as one bytes object.

    ``block``/``names`` come from :func:`header_block` (computed once per pool for its
    default headers); ``host_line`` and ``extra_defaults`` are sent unless the caller set
    those names; framing headers are added for a body unless the caller set them.
    """
    if not _TOKEN.fullmatch(method):
        raise HeaderInjectionError(f"invalid method {method!r}")
    parts = [method, " ", request_target(target), " HTTP/1.1\r\n"]
    if "host" not in names:
        parts.append(host_line)
    parts.append(block)
    if extra_defaults:
        parts.append(extra_defaults)
    if "content-length" not in names and "transfer-encoding" not in names:
        if chunked:
            parts.append("Transfer-Encoding: chunked\r\n")
        elif body_length is not None:
            parts.append(f"Content-Length: {body_length}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


# --- response heads ------------------------------------------------------------------------


class ResponseHead:
    """A parsed status line and header block, plus what it means for the body."""

    __slots__ = ("framer", "headers", "keep_alive", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str,
        version: int,
        headers: HTTPHeaderDict,
        keep_alive: bool,
        framer: Framer,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.framer = framer

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r} {self.framer!r}>"


def find_head_end(buf: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """``(end_of_head, start_of_body)`` or ``(-1, -1)`` if the blank line is not there yet."""
    idx = buf.find(b"\r\n\r\n", start)
    if idx >= 0:
        return idx, idx + 4
    idx = buf.find(b"\n\n", start)  # bare-LF heads (RFC 9112 §2.2 lets us accept them)
    if idx >= 0:
        # It may be "\n\r\n" mixed; both forms end the head at the first blank line.
        return idx, idx + 2
    idx = buf.find(b"\n\r\n", start)
    if idx >= 0:
        return idx, idx + 3
    return -1, -1


def parse_head(
    data: bytes | bytearray, method: str, enforce_content_length: bool = True
) -> ResponseHead:
    """Parse a response head (without its blank line) sent in reply to ``method``."""
    text = data.decode("latin-1")
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1:
        lines = [line.rstrip("\r") for line in text.split("\n")]
    if len(lines) > MAX_HEADERS + 1:
        raise ProtocolError(f"too many header fields ({len(lines) - 1} > {MAX_HEADERS})")
    if len(data) > MAX_LINE_BYTES and max(map(len, lines)) > MAX_LINE_BYTES:
        raise ProtocolError(f"header line longer than {MAX_LINE_BYTES} bytes")

    status_line = lines[0]
    version_s, _, rest = status_line.partition(" ")
    if version_s == "HTTP/1.1":
        version = 11
    elif version_s == "HTTP/1.0":
        version = 10
    else:
        raise ProtocolError(f"invalid status line {status_line[:200]!r}")
    code_s = rest[:3]
    if not (len(code_s) == 3 and code_s.isdigit() and code_s.isascii()) or rest[3:4] not in (
        "",
        " ",
    ):
        raise ProtocolError(f"invalid status line {status_line[:200]!r}")
    status = int(code_s)
    if status < 100:
        raise ProtocolError(f"invalid status code in {status_line[:200]!r}")
    reason = rest[4:]

    store: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[0] in " \t" or " " in name or "\t" in name:
            if line[:1] in (" ", "\t") and last is not None:
                # obs-fold (RFC 9112 §5.2): a continuation line joins the previous value.
                last[-1] = last[-1] + " " + line.strip(" \t")
                continue
            raise ProtocolError(f"invalid header line {line[:200]!r}")
        value = value.strip(" \t")
        lname = name.lower()
        entry = store.get(lname)
        if entry is None:
            store[lname] = last = [name, value]
        else:
            entry.append(value)
            last = entry
    headers = HTTPHeaderDict._from_store(store)

    conn_tokens = store.get("connection")
    if conn_tokens is None:
        keep_alive = version == 11
    else:
        tokens = ",".join(conn_tokens[1:]).lower()
        keep_alive = "close" not in tokens and (version == 11 or "keep-alive" in tokens)

    framer: Framer
    if method == "HEAD" or status < 200 or status in (204, 304):
        framer = NoBodyFramer()
        if status == 101:
            keep_alive = False
    elif (te := store.get("transfer-encoding")) is not None:
        codings = ",".join(te[1:]).lower()
        if codings.rsplit(",", 1)[-1].strip() == "chunked":
            framer = ChunkedFramer()
        else:
            framer = UntilCloseFramer()
            keep_alive = False
        if "content-length" in store:
            # RFC 9112 §6.1: TE overrides CL, and the connection must not be reused.
            keep_alive = False
    elif (cl := store.get("content-length")) is not None:
        framer = ContentLengthFramer(_content_length(cl[1:]), enforce_content_length)
    else:
        framer = UntilCloseFramer()
        keep_alive = False
    return ResponseHead(status, reason, version, headers, keep_alive, framer)


def _content_length(values: list[str]) -> int:
    found = {v.strip() for value in values for v in value.split(",")}
    if len(found) != 1:
        raise ProtocolError(f"conflicting Content-Length values {values!r}")
    text = found.pop()
    if not (text.isdigit() and text.isascii()) or len(text) > 18:
        raise ProtocolError(f"invalid Content-Length {text!r}")
    return int(text)


# --- body framing --------------------------------------------------------------------------


class Framer:
    """Takes one response body off the front of a receive buffer."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def take(self, buf: bytearray, amt: int) -> bytes:
        """Remove and return up to ``amt`` body bytes from ``buf`` (``b""``: need more)."""
        raise NotImplementedError

    def at_eof(self) -> None:
        """The peer closed the connection; raise if the body is incomplete."""
        if not self.done:
            raise ProtocolError("connection closed before the end of the response body")

    @property
    def remaining(self) -> int | None:
        """Body bytes still expected, when known."""
        return None


class NoBodyFramer(Framer):
    __slots__ = ()

    def __init__(self) -> None:
        self.done = True

    def take(self, buf: bytearray, amt: int) -> bytes:
        return b""

    def __repr__(self) -> str:
        return "<NoBodyFramer>"


class ContentLengthFramer(Framer):
    __slots__ = ("enforce", "left", "length")

    def __init__(self, length: int, enforce: bool = True) -> None:
        self.length = length
        self.left = length
        self.enforce = enforce
        self.done = length == 0

    @property
    def remaining(self) -> int:
        return self.left

    def take(self, buf: bytearray, amt: int) -> bytes:
        n = min(self.left, len(buf), amt)
        if n <= 0:
            return b""
        data = bytes(buf[:n])
        del buf[:n]
        self.left -= n
        if self.left == 0:
            self.done = True
        return data

    def at_eof(self) -> None:
        if self.done:
            return
        if self.enforce:
            got = self.length - self.left
            raise ProtocolError(
                f"connection closed after {got} of {self.length} body bytes (Content-Length)"
            )
        self.done = True

    def __repr__(self) -> str:
        return f"<ContentLengthFramer {self.left}/{self.length} left>"


class UntilCloseFramer(Framer):
    __slots__ = ()

    def take(self, buf: bytearray, amt: int) -> bytes:
        n = min(len(buf), amt)
        if n <= 0:
            return b""
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def at_eof(self) -> None:
        self.done = True

    def __repr__(self) -> str:
        return "<UntilCloseFramer>"


class _Chunk(enum.Enum):
    SIZE = "size line"
    DATA = "chunk data"
    DATA_END = "CRLF after chunk data"
    TRAILER = "trailer section"
    DONE = "done"


# Legal moves of the chunked state machine; anything else is a bug here, not the peer's.
_CHUNK_MOVES = {
    _Chunk.SIZE: {_Chunk.DATA, _Chunk.TRAILER},
    _Chunk.DATA: {_Chunk.DATA_END},
    _Chunk.DATA_END: {_Chunk.SIZE},
    _Chunk.TRAILER: {_Chunk.DONE},
    _Chunk.DONE: set(),
}


class ChunkedFramer(Framer):
    """``Transfer-Encoding: chunked`` (RFC 9112 §7.1); trailers are read and dropped."""

    __slots__ = ("_left", "_state", "_trailer_bytes")

    def __init__(self) -> None:
        self.done = False
        self._state = _Chunk.SIZE
        self._left = 0
        self._trailer_bytes = 0

    def _move(self, new: _Chunk) -> None:
        if new not in _CHUNK_MOVES[self._state]:
            raise AssertionError(f"chunked framer: illegal move {self._state} -> {new}")
        self._state = new
        if new is _Chunk.DONE:
            self.done = True

    def take(self, buf: bytearray, amt: int) -> bytes:
        while True:
            state = self._state
            if state is _Chunk.DATA:
                n = min(self._left, len(buf), amt)
                if n <= 0:
                    return b""
                data = bytes(buf[:n])
                del buf[:n]
                self._left -= n
                if self._left == 0:
                    self._move(_Chunk.DATA_END)
                return data
            if state is _Chunk.SIZE:
                idx = buf.find(b"\n", 0, MAX_CHUNK_LINE)
                if idx < 0:
                    if len(buf) >= MAX_CHUNK_LINE:
                        raise ProtocolError("chunk size line too long")
                    return b""
                line = bytes(buf[:idx]).rstrip(b"\r")
                del buf[: idx + 1]
                size_s = line.split(b";", 1)[0].strip(b" \t").decode("latin-1")
                if not _HEX.fullmatch(size_s):
                    raise ProtocolError(f"invalid chunk size line {line[:100]!r}")
                self._left = int(size_s, 16)
                self._move(_Chunk.DATA if self._left else _Chunk.TRAILER)
            elif state is _Chunk.DATA_END:
                if len(buf) < 2:
                    if bytes(buf[:1]) not in (b"", b"\r", b"\n"):
                        raise ProtocolError("missing CRLF after chunk data")
                    if bytes(buf[:1]) == b"\n":
                        del buf[:1]
                        self._move(_Chunk.SIZE)
                        continue
                    return b""
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                else:
                    raise ProtocolError(f"missing CRLF after chunk data, got {bytes(buf[:10])!r}")
                self._move(_Chunk.SIZE)
            elif state is _Chunk.TRAILER:
                idx = buf.find(b"\n")
                if idx < 0:
                    if self._trailer_bytes + len(buf) > MAX_TRAILER_BYTES:
                        raise ProtocolError("chunked trailer section too large")
                    return b""
                line = bytes(buf[:idx]).rstrip(b"\r")
                del buf[: idx + 1]
                self._trailer_bytes += idx + 1
                if self._trailer_bytes > MAX_TRAILER_BYTES:
                    raise ProtocolError("chunked trailer section too large")
                if not line:
                    self._move(_Chunk.DONE)
            else:
                return b""

    def at_eof(self) -> None:
        if not self.done:
            raise ProtocolError(f"connection closed inside chunked body ({self._state.value})")

    def __repr__(self) -> str:
        return f"<ChunkedFramer {self._state.value}>"
