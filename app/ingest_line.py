"""The ingest's own Redis connection: one command at a time, its reply read off the stream.

`Ingest` sends one script call per batch of webhooks and waits for its reply; this is the
line it goes over. A command is packed by hiredis in one go, and while the connection is
a plain asyncio stream (a TCP or unix socket, TLS included) the reply is read straight off
it by a hiredis reader: redis-py's own send and read layers cost the receiver more per
batch than the rest of a request does (measured: 6-9 % more webhooks per second without
them). Anything else, such as fakeredis's in-process connection, goes through redis-py's
`send_packed_command` / `read_response`. redis-py still opens the connection, so its
handshake (AUTH, SELECT, TLS, the protocol) is redis-py's.

A dropped connection is retried once; a connection left mid-reply (a timeout, a cancel)
is closed and opened again by the next command. `Deadline` bounds a command without
`asyncio.timeout`'s cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis


class Deadline:
    """`asyncio.timeout` for one await in the receiver's hot path, at a third of its cost:
    past `seconds` the task is cancelled and `TimeoutError` raised; a cancel from outside
    stays a cancel."""

    __slots__ = ("_expired", "_handle", "_loop", "_seconds", "_task")

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._seconds = seconds
        self._loop = loop  # the running loop, when the caller knows it (saves a lookup)
        self._expired = False

    async def __aenter__(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        self._task = task
        self._handle = loop.call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        self._handle.cancel()
        # The cancel is delivered at the await this block was suspended in, so it ends
        # here; it was ours alone when no other cancel is still counted.
        if self._expired and self._task.uncancel() == 0 and kind is asyncio.CancelledError:
            raise TimeoutError(f"no answer within {self._seconds:g}s")
        return False


class IngestLine:
    """One connection of `pool`'s settings, without a socket timeout (redis-py wraps every
    write under one in `asyncio.wait_for`, a task per command; the caller's `Deadline`
    bounds connect, write and read instead)."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._lock = asyncio.Lock()
        self._conn: Any = None
        kwargs = pool.connection_kwargs  # replies decoded as the client's own would be
        self._encoding = kwargs.get("encoding", "utf-8") if kwargs.get("decode_responses") else None
        self._reader = self._new_reader()

    async def call(self, command: tuple[Any, ...]) -> Any:
        """Send one command and return its reply; an error reply raises redis-py's
        exception for it (`NoScriptError`, `ResponseError`), a lost connection
        `redis.ConnectionError`."""
        packed = hiredis.pack_command(command)
        async with self._lock:
            if self._conn is None:
                pool = self._pool
                kwargs = {**pool.connection_kwargs, "socket_timeout": None}
                self._conn = pool.connection_class(**kwargs)
            conn = self._conn
            # One turn of the loop first: the requests of the batch just answered then
            # write their responses before this write wakes Redis, which on a small
            # machine can take the core from this process before they are sent. Measured
            # without it: 11 % fewer webhooks per second, four times the preemptions.
            await asyncio.sleep(0)
            for attempt in (1, 2):
                try:
                    if not conn.is_connected:
                        await conn.connect()
                    stream = _streams(conn)
                    if stream is None:
                        await conn.send_packed_command(packed, check_health=False)
                        return await conn.read_response()
                    stream[1].write(packed)
                    return await self._reply(stream[0])
                except redis.ResponseError:
                    raise  # an error reply: the connection is in step
                except redis.ConnectionError:
                    await self._drop(conn)
                    if attempt == 2:
                        raise
                except BaseException:
                    await self._drop(conn)
                    raise
        raise AssertionError("unreachable")

    async def _reply(self, stream: asyncio.StreamReader) -> Any:
        reader = self._reader
        reply = reader.gets()
        while reply is False:
            data = await stream.read(65536)
            if not data:
                raise redis.ConnectionError("Redis closed the connection")
            reader.feed(data)
            reply = reader.gets()
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.startswith("NOSCRIPT"):
                raise redis.exceptions.NoScriptError(text)
            raise redis.ResponseError(text)
        return reply

    async def _drop(self, conn: Any) -> None:
        await conn.disconnect()
        self._reader = self._new_reader()  # no half reply carried over

    def _new_reader(self) -> Any:
        return hiredis.Reader(encoding=self._encoding) if self._encoding else hiredis.Reader()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.disconnect()


def _streams(conn: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """The connection's asyncio streams, when it is a plain socket connection."""
    reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
    if isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter):
        return reader, writer
    return None
