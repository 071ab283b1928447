"""A TCP relay a test can freeze, to make a shared server look hung to one process under test.

The session's PostgreSQL is shared with other tests and must not be stopped, so a test that
needs "the database stopped answering" points one service at a relay and freezes that.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


class FreezableRelay:
    """Forwards TCP to ``target`` until frozen. Frozen, it keeps every connection open and
    passes nothing either way, new connections included (what a hung database looks like from
    the client); thawed again, it closes the connections it held (as a restarted server
    would) and relays new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = asyncio.Event()
        self.thawed = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    @classmethod
    def for_dsn(cls, dsn: str) -> FreezableRelay:
        parts = urlsplit(dsn)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def relayed_dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by this (started) relay's."""
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(
            f"{parts.hostname}:{parts.port}", f"127.0.0.1:{self.port}")))

    def freeze(self) -> None:
        self.thawed.clear()
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self.thawed.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while not self.frozen.is_set():
                data = await source.read(65536)
                if not data or self.frozen.is_set():
                    break
                sink.write(data)
                await sink.drain()
            if self.frozen.is_set():
                await self.thawed.wait()
            sink.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for end in (writer, up_writer):
                end.close()

    async def close(self) -> None:
        self.thaw()  # release the held connections
        if self.server is not None:
            self.server.close()


__all__ = ["FreezableRelay"]
