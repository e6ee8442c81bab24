"""The ingest's own connection on a real Redis: replies read off the stream, error replies
as redis-py's exceptions, a connection the server closed opened again, and the same
answers through redis-py's layers where the connection is not a socket (fakeredis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
import redis
import redis.asyncio

from app.ingest import connect_async
from app.ingest_line import IngestLine, _streams
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis_server


@pytest.fixture
async def line(redis_server: RedisServer, real_redis: Any) -> AsyncIterator[IngestLine]:
    client = connect_async(redis_server.url)
    made = IngestLine(client.connection_pool)
    yield made
    await made.close()
    await client.aclose()


async def test_replies_are_read_off_the_socket(line: IngestLine) -> None:
    assert await line.call(("PING",)) == "PONG"
    assert _streams(line._conn) is not None  # the fast path, not redis-py's reader
    big = "é" * 300_000  # a reply longer than one read
    assert await line.call(("EVAL", "return ARGV[1]", 0, big)) == big
    assert await line.call(("EVAL", "return {1, 'two'}", 0)) == [1, "two"]


async def test_error_replies_raise_and_leave_the_connection_in_step(line: IngestLine) -> None:
    with pytest.raises(redis.exceptions.NoScriptError):
        await line.call(("EVALSHA", "0" * 40, 0))
    with pytest.raises(redis.ResponseError, match="unknown command"):
        await line.call(("NOSUCHCOMMAND",))
    assert await line.call(("PING",)) == "PONG"


async def test_a_connection_the_server_closed_is_opened_again(
    line: IngestLine, real_redis: Any
) -> None:
    await line.call(("CLIENT", "SETNAME", "ingest-line"))
    real_redis.client_kill_filter(_type="normal", skipme=True)
    assert await line.call(("PING",)) == "PONG"  # one retry on a new connection
    assert await line.call(("CLIENT", "GETNAME")) is None  # it is a new one


async def test_a_connection_that_is_not_a_socket_goes_through_redis_py() -> None:
    client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    line = IngestLine(client.connection_pool)
    try:
        assert await line.call(("SET", "k", "v")) == "OK"
        assert await line.call(("GET", "k")) == "v"
        assert _streams(line._conn) is None
    finally:
        await line.close()
        await client.aclose()


async def test_replies_are_bytes_for_a_client_that_does_not_decode(
    redis_server: RedisServer,
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    line = IngestLine(client.connection_pool)
    try:
        assert await line.call(("ECHO", "x")) == b"x"
    finally:
        await line.close()
        await client.aclose()
