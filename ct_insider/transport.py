"""A lean HTTP/1.1 transport for httpx: kept-alive connections on asyncio streams, responses
parsed by httptools (C).

httpx's default transport (httpcore, h11, anyio) costs ~0.7 ms of CPU per request on our
2-core benchmark machine, this one ~0.15 ms; every journey delivery is one Insider request,
so on the realtime path the difference is several percent of all CPU per event
(bench/realtime.py). httpx still does everything above the wire: URLs, headers, auth and
content decoding. It does not speak to proxies: when the environment names one,
`api_http_client` returns httpx's own transport, which honours HTTP(S)_PROXY and NO_PROXY.

Failures map to httpx's exceptions with the same meaning, which the retry rules rely on:
ConnectError/ConnectTimeout/PoolTimeout only when the request was certainly not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

import httptools
import httpx

from ct_insider import telemetry

Origin = tuple[str, str, int]  # scheme, host, port
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_SIZE = 256 * 1024


@dataclass
class _Response:
    """httptools parser callbacks, collecting one response."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    headers_done: bool = False
    complete: bool = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def reusable(self, keepalive_expiry: float) -> bool:
        # A server that closed an idle connection has fed EOF to the reader by now.
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < keepalive_expiry
        )

    def close(self) -> None:
        self.writer.close()

    async def send(self, data: bytes, seconds: float | None) -> None:
        try:
            async with asyncio.timeout(seconds):
                self.writer.write(data)
                await self.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("timed out sending the request") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def receive(self, seconds: float | None, *, head: bool) -> tuple[int, _Response, bool]:
        """(status, response, whether the connection may be reused). The answer to a HEAD
        request ends with its headers, whatever length they announce."""
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not (response.complete or (head and response.headers_done)):
            try:
                async with asyncio.timeout(seconds):
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError as exc:
                raise httpx.ReadTimeout("timed out reading the response") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            if not data:
                if response.headers_done and self._ends_at_close(response):
                    return parser.get_status_code(), response, False
                raise httpx.RemoteProtocolError("server disconnected without a complete response")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(f"malformed response: {exc}") from exc
        connection = (response.header(b"connection") or b"").lower()
        keep_alive = (
            b"close" not in connection
            if parser.get_http_version() == "1.1"
            else b"keep-alive" in connection
        )
        return parser.get_status_code(), response, keep_alive

    @staticmethod
    def _ends_at_close(response: _Response) -> bool:
        """A response with neither length nor chunks lasts until the server closes."""
        return (
            response.header(b"content-length") is None
            and response.header(b"transfer-encoding") is None
        )


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts


def _head(request: httpx.Request) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
    lines.append(b"\r\n")
    return b"".join(lines)


async def _body(request: httpx.Request) -> bytes:
    content = await request.aread()
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        return (b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content)) if content else b"0\r\n\r\n"
    return content


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = defaultdict(list)
        self._slots: dict[Origin, asyncio.Semaphore] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def _open(self, origin: Origin, seconds: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=READ_SIZE
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Connection(reader, writer)

    def _reused(self, origin: Origin) -> _Connection | None:
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()
            if connection.reusable(self._keepalive_expiry):
                return connection
            connection.close()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin: Origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        timeouts = _timeouts(request)
        payload = _head(request) + await _body(request)
        slots = self._slots.setdefault(origin, asyncio.Semaphore(self._max_connections))
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection free in time") from exc
        connection: _Connection | None = None
        keep = False
        try:
            connection = self._reused(origin) or await self._open(origin, timeouts.get("connect"))
            await connection.send(payload, timeouts.get("write"))
            status, response, keep = await connection.receive(
                timeouts.get("read"), head=request.method == "HEAD"
            )
        finally:
            if connection is not None:
                if keep:
                    connection.idle_since = time.monotonic()
                    self._idle[origin].append(connection)
                else:
                    connection.close()
            slots.release()
        return httpx.Response(
            status,
            headers=response.headers,
            stream=httpx.ByteStream(bytes(response.body)),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
                with contextlib.suppress(OSError):
                    await connection.writer.wait_closed()
        self._idle.clear()


def api_http_client(
    timeout: httpx.Timeout, max_connections: int = 100, *, system: str | None = None
) -> httpx.AsyncClient:
    """The httpx client of the commercetools and Insider clients; `system` names the API in
    its spans and metrics (ct_insider/telemetry.py), which exist only while telemetry is on."""
    if {"http", "https", "all"} & set(urllib.request.getproxies()):
        # httpx ignores environment proxies once a transport is given: keep its own.
        return httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=max_connections)
        )
    transport: httpx.AsyncBaseTransport = LeanTransport(max_connections=max_connections)
    if system is not None:
        transport = telemetry.instrumented(transport, system)
    return httpx.AsyncClient(timeout=timeout, transport=transport)
