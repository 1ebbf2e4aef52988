"""A lean HTTP/1.1 load generator: pre-serialized requests over kept-alive sockets.

httpx costs milliseconds of CPU per request; on a 2-core machine shared with the system
under test that would be measured as the system's own slowness.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any


class LeanClient:
    # Connections open as needed, up to this many. A storefront's senders are its visitors'
    # browsers, thousands at once; with 64 the benchmark itself capped one event per request
    # below its 450/s (each request holds its connection for the commit window, ~0.15 s:
    # 64 / 0.15 s = ~430/s), and its queue showed as latency from the post.
    def __init__(self, host: str, port: int, token: str, connections: int = 256) -> None:
        self._host, self._port, self._token = host, port, token
        self._size = connections
        self._pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._pool.empty() and self._opened < self._size:
            self._opened += 1
            return await asyncio.open_connection(self._host, self._port)
        return await self._pool.get()

    async def _status_line(
        self, request: bytes
    ) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        """Send the request and read its status line. A kept-alive connection the server
        closed meanwhile (its idle timeout: no answer, nothing of the request read) is
        replaced by a fresh one and the request sent again on it."""
        reader, writer = await self._connection()
        for fresh in (False, True):
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line or fresh:
                break
            writer.close()
            reader, writer = await asyncio.open_connection(self._host, self._port)
        return status_line, reader, writer

    def request(self, path: str, body: Any) -> bytes:
        """The whole request, serialized ahead of time (not on the benchmark's clock)."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {self._token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        return head + payload

    async def send(self, request: bytes) -> int:
        status_line, reader, writer = await self._status_line(request)
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        self._pool.put_nowait((reader, writer))
        return int(status_line.split()[1])

    async def close(self) -> None:
        while not self._pool.empty():
            _, writer = self._pool.get_nowait()
            writer.close()


async def at_times(times: list[float], send: Callable[[int], Awaitable[None]]) -> float:
    """Call `send(index)` for each index at `times[index]` seconds after the start (times in
    ascending order) without waiting for earlier calls; returns the seconds until all
    finished.

    One pacing loop, a task per call only while it is in flight: the load generator shares
    the cores with the system under test, so it must stay cheap."""
    in_flight: set[asyncio.Future[None]] = set()
    started = time.monotonic()
    for index, at in enumerate(times):
        delay = started + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(send(index))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return time.monotonic() - started
