"""A protocol-abiding WebSocket client for end-to-end tests (websockets)."""

import asyncio
import json
from typing import Any

import websockets

TERMINAL = {"agent_completed", "agent_error", "agent_cancelled"}


class AgentClient:
    """Keeps the events it accepted (seq > last seen) across reconnects."""

    def __init__(self, url: str, token: str, ssl: Any = None) -> None:
        self.url = url
        self.token = token
        self.ssl = ssl
        self.last_seq = 0
        self.events: list[dict[str, Any]] = []
        self.ws: Any = None
        self.hello: dict[str, Any] = {}

    async def connect(self, *, resume: bool = True) -> dict[str, Any]:
        """Open a socket, then resume from the last seq seen (ignoring live events meanwhile)."""
        self.ws = await websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
            max_size=2**24,
            **({"ssl": self.ssl} if self.ssl is not None else {}),
        )
        self.hello = await self.recv()
        assert self.hello["type"] == "connection_established", self.hello
        if resume:
            return await self.resume()
        return self.hello

    async def resume(self) -> dict[str, Any]:
        """Replay what was missed; return resume_complete.

        Live events sent before the server read the resume also come in the
        replay, so frames are held until resume_complete and taken in seq order.
        """
        await self.send(
            {"type": "resume", "request_id": "resume", "payload": {"after_seq": self.last_seq}}
        )
        held = []
        while True:
            frame = await self.recv()
            if frame.get("type") == "resume_complete":
                for event in sorted(held, key=lambda e: e["seq"]):
                    self.take(event)
                return frame
            if "seq" in frame:
                held.append(frame)

    def take(self, frame: dict[str, Any]) -> bool:
        """Accept an agent event if it is new; tell whether it was."""
        if "seq" in frame and frame["seq"] > self.last_seq:
            self.events.append(frame)
            self.last_seq = frame["seq"]
            return True
        return False

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 20) -> dict[str, Any]:
        """Receive one JSON frame."""
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def start(self, message: str, agent: str = "triage", **payload: Any) -> dict[str, Any]:
        """Start a run; return run_accepted (agent events meanwhile are taken)."""
        rid = f"start-{len(self.events)}-{message[:8]}"
        await self.send(
            {
                "type": "start_agent",
                "request_id": rid,
                "payload": {"agent": agent, "message": message, **payload},
            }
        )
        while True:
            frame = await self.recv()
            if frame.get("request_id") == rid:
                assert frame["type"] == "run_accepted", frame
                return frame
            self.take(frame)

    async def until_terminal(self, run_ids: set[str], timeout: float = 30) -> None:
        """Take events until every run in run_ids has its terminal event."""
        ended = {e["run_id"] for e in self.events if e["type"] in TERMINAL}
        while not run_ids <= ended:
            frame = await self.recv(timeout)
            if self.take(frame) and frame["type"] in TERMINAL:
                ended.add(frame["run_id"])

    async def close(self) -> None:
        """Close the socket."""
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.ws is not None:
            self.ws.transport.abort()
            self.ws = None
