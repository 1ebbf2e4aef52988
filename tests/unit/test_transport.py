"""The lean httpx transport against a real HTTP/1.1 server on 127.0.0.1 that misbehaves on
request: keep-alive, closed idle connections, chunked and gzip bodies, timeouts, drops."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trustme

from ct_insider.transport import LeanTransport, api_http_client
from emulators.process import free_port


@dataclass
class Server:
    port: int
    scheme: str = "http"
    connections: int = 0
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"  # the name on the cert
        return f"{self.scheme}://{host}:{self.port}"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, target, body


def _answer(status: int, body: bytes, *extra: str) -> bytes:
    headers = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def http_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(free_port(), scheme="https" if tls else "http")

    handlers: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()
    closing = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if request is None:
                    return
                server.requests.append(request)
                method, target, body = request
                if target.startswith("/echo"):
                    echo = {"method": method, "target": target, "body": body.decode()}
                    writer.write(_answer(200, json.dumps(echo).encode()))
                elif target == "/close-after":
                    writer.write(_answer(200, b"bye", "Connection: close"))
                    await writer.drain()
                    return
                elif target == "/chunked":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    )
                elif target == "/gzip":
                    writer.write(_answer(200, gzip.compress(b"zipped"), "Content-Encoding: gzip"))
                elif target == "/until-close":
                    writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
                    await writer.drain()
                    return
                elif target == "/slow":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closing.wait(), 0.6)
                    writer.write(_answer(200, b"late"))
                elif target == "/drop":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    await writer.drain()
                    return
                elif target == "/head":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
                else:
                    writer.write(_answer(404, b"no"))
                await writer.drain()
        except ConnectionError:
            pass  # the client gave up (timeout tests)
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", server.port, ssl=tls)
    try:
        yield server
    finally:
        listener.close()
        closing.set()  # a slow answer the client stopped waiting for ends now
        for writer in writers:
            writer.close()  # kept-alive connections: their handlers read EOF and return
        await asyncio.gather(*handlers, return_exceptions=True)


@asynccontextmanager
async def lean_client(
    ssl_context: ssl.SSLContext | None = None, **options: float
) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(options.pop("timeout", 5.0))
    transport = LeanTransport(ssl_context=ssl_context, **options)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        yield client


async def test_requests_share_one_kept_alive_connection() -> None:
    async with http_server() as server, lean_client() as client:
        first = await client.post(f"{server.url}/echo?a=1&b=%20x", json={"k": "v"})
        second = await client.get(f"{server.url}/echo")
        assert first.status_code == 200
        assert first.json() == {"method": "POST", "target": "/echo?a=1&b=%20x", "body": '{"k":"v"}'}
        assert second.json()["method"] == "GET"
        assert server.connections == 1


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async with http_server() as server, lean_client() as client:
        assert (await client.get(f"{server.url}/close-after")).text == "bye"
        await asyncio.sleep(0.05)
        assert (await client.get(f"{server.url}/echo")).status_code == 200
        assert server.connections == 2


async def test_idle_connections_expire() -> None:
    async with http_server() as server, lean_client(keepalive_expiry=0.05) as client:
        await client.get(f"{server.url}/echo")
        await asyncio.sleep(0.1)
        await client.get(f"{server.url}/echo")
        assert server.connections == 2


async def test_bodies_chunked_gzipped_until_close_and_after_head() -> None:
    async with http_server() as server, lean_client() as client:
        assert (await client.get(f"{server.url}/chunked")).text == "hello world"
        assert (await client.get(f"{server.url}/gzip")).text == "zipped"
        head = await client.head(f"{server.url}/head")
        assert (head.status_code, head.content) == (200, b"")
        assert (await client.get(f"{server.url}/echo")).status_code == 200  # after HEAD
        assert (await client.get(f"{server.url}/until-close")).text == "all of it"


async def test_streamed_request_bodies_are_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    async with http_server() as server, lean_client() as client:
        answer = await client.post(f"{server.url}/echo", content=parts())
        assert answer.json()["body"] == "abcd"


async def test_failures_map_to_httpx_exceptions() -> None:
    async with http_server() as server, lean_client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server.url}/slow")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/drop", timeout=5.0)
        # still usable (with a timeout a loaded machine cannot outrun: 0.3 s was for /slow)
        assert (await client.get(f"{server.url}/echo", timeout=5.0)).status_code == 200
    async with lean_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/")


async def test_max_connections_caps_concurrency() -> None:
    async with http_server() as server, lean_client(max_connections=2) as client:
        answers = await asyncio.gather(*(client.get(f"{server.url}/echo") for _ in range(10)))
        assert all(a.status_code == 200 for a in answers)
        assert server.connections == 2


async def test_a_proxy_in_the_environment_keeps_httpx_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with api_http_client(httpx.Timeout(5.0)) as direct:
        assert isinstance(direct._transport, LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    async with api_http_client(httpx.Timeout(5.0)) as proxied:
        assert not isinstance(proxied._transport, LeanTransport)
        assert proxied._transport_for_url(httpx.URL("https://api.example.com/")) is not (
            proxied._transport
        )  # the proxy's own transport


async def test_https_verifies_the_server_certificate() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with http_server(tls=server_tls) as server:
        async with lean_client(ssl_context=trusting) as client:
            first = await client.post(f"{server.url}/echo", json={"over": "tls"})
            second = await client.get(f"{server.url}/chunked")
            assert (first.json()["body"], second.text) == ('{"over":"tls"}', "hello world")
            assert server.connections == 1
        # A certificate the client does not trust: refused before anything is sent
        async with lean_client() as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"{server.url}/echo")
