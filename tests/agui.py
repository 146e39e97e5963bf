"""A small AG-UI SSE client for tests: every event it reads is validated by ag-ui-protocol."""

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ag_ui.core import Event
from pydantic import TypeAdapter

EVENT = TypeAdapter(Event)


@dataclass
class SseEvent:
    """One SSE event: its id (our seq) and its AG-UI event, parsed by the package's models."""

    id: int | None
    data: dict[str, Any]
    model: Any


@dataclass
class Response:
    """What an AG-UI endpoint answered."""

    status: int
    headers: dict[str, str]
    events: list[SseEvent] = field(default_factory=list)
    body: str = ""
    comments: int = 0

    def json(self) -> Any:
        """The body of a JSON (error) response."""
        return json.loads(self.body)

    def types(self) -> list[str]:
        """The AG-UI event types, in order."""
        return [e.data["type"] for e in self.events]

    def seqs(self) -> list[int]:
        """Our seqs the events were made from, each once, in order."""
        out: list[int] = []
        for event in self.events:
            if event.id is not None and (not out or out[-1] != event.id):
                out.append(event.id)
        return out


def run_input(message: str, *, thread_id: str | None = None, **props: Any) -> dict[str, Any]:
    """A RunAgentInput as @ag-ui/client sends it."""
    return {
        "threadId": thread_id or str(uuid.uuid4()),
        "runId": str(uuid.uuid4()),
        "messages": [{"id": "u1", "role": "user", "content": message}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": props,
    }


async def request(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    stop: Any = None,
    cut_after: int | None = None,
    timeout: float = 30,
) -> Response:
    """Send one HTTP/1.1 request; read a JSON answer or SSE events until `stop(event)` or the end.

    `cut_after`: drop the connection (no goodbye) once that many events were read.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = (
        b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    try:
        return await asyncio.wait_for(_read(reader, writer, stop, cut_after), timeout)
    finally:
        writer.transport.abort()


async def _read(reader: Any, writer: Any, stop: Any, cut_after: int | None) -> Response:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    response = Response(status, headers)
    chunked = headers.get("transfer-encoding") == "chunked"
    if not headers.get("content-type", "").startswith("text/event-stream"):
        response.body = (await _body(reader, chunked)).decode()
        return response
    buffer = ""
    async for text in _chunks(reader, chunked):
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            event = _parse(block)
            if event is None:
                response.comments += 1
                continue
            response.events.append(event)
            if stop is not None and stop(event):
                return response
            if cut_after is not None and len(response.events) >= cut_after and not buffer:
                writer.transport.abort()
                return response
    return response


def _parse(block: str) -> SseEvent | None:
    seq, data = None, []
    for line in block.split("\n"):
        if line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if not data:
        return None
    text = "\n".join(data)
    return SseEvent(seq, json.loads(text), EVENT.validate_json(text))


async def _chunks(reader: Any, chunked: bool) -> Any:
    if not chunked:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data.decode()
        return
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2].decode()


async def _body(reader: Any, chunked: bool) -> bytes:
    parts = []
    async for text in _chunks(reader, chunked):
        parts.append(text.encode())
    return b"".join(parts)
