"""A raw `websockets` server doing the same broadcast as bench/plain/asgi.py, for comparison."""

import asyncio
import json
import sys
import time

import websockets

from bench.pacing import paced

groups: dict[int, set] = {}
drivers: set[asyncio.Future] = set()


async def drive(users: int, rate: float, seconds: float) -> None:
    async for i in paced(rate, int(rate * seconds)):
        text = json.dumps({"type": "partial_result", "seq": i, "t": time.time()})
        # websockets' own fan-out: writes the frame to each socket without awaiting.
        websockets.broadcast(groups.get(i % users, ()), text)


async def handler(ws) -> None:
    async for raw in ws:
        frame = json.loads(raw)
        if "user" in frame:
            groups.setdefault(int(frame["user"]), set()).add(ws)
            await ws.send('{"type":"joined"}')
        elif "drive" in frame:
            drivers.add(asyncio.ensure_future(drive(**frame["drive"])))


async def main(port: int) -> None:
    # No compression: neither daphne nor the load client compresses either.
    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
