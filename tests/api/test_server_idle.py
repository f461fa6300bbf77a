"""Issue 22 §7: the daemon's HTTP server sleeps until asked to stop -- uvicorn's own main
loop wakes every 0.1 s (to see whether to exit, and every tenth time to renew the ``date``
header). Real server on loopback, real requests."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
import urllib.request

import uvicorn

from bastion.api.server import _Server


async def _app(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def test_the_server_wakes_for_requests_and_its_stop_not_a_tick() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app, log_config=None, date_header=True, lifespan="on")
    listening = asyncio.Event()
    server = _Server(config, listening.set)
    ticks = 0
    real_tick = server.on_tick

    async def counted_tick(counter: int) -> bool:
        nonlocal ticks
        ticks += 1
        return await real_tick(counter)

    server.on_tick = counted_tick  # type: ignore[method-assign]

    def get() -> tuple[float, str]:
        before = time.time()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            return before, response.headers["date"]

    async def scenario() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await asyncio.wait_for(listening.wait(), 30)
        # A second goes by: uvicorn's loop would tick ten times.
        end = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)
        assert ticks <= 1  # the one look at start, if any
        # Responses still carry a current date (made on demand, not by the tick).
        for _ in range(2):
            before, date = await asyncio.to_thread(get)
            stamp = email.utils.parsedate_to_datetime(date).timestamp()
            assert stamp >= int(before)
        # Setting should_exit (what the signal handlers do) ends the server.
        server.should_exit = True
        await asyncio.wait_for(serving, 30)

    asyncio.run(scenario())
    sock.close()
