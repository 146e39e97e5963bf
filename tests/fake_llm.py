"""A local HTTP server speaking OpenAI's streaming chat-completions protocol, scripted by tests."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from tests.services import free_port


@dataclass
class Reply:
    """One scripted answer: a status, headers, and SSE lines sent with a delay between them."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    body: str = ""
    delay: float = 0.0
    hang: bool = False


CHUNK = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def sse(
    *chunks: dict[str, Any], done: bool = True, usage: tuple[int, int] | None = None
) -> list[str]:
    """Encode chunks as `data:` lines, then the usage chunk if given, ending with [DONE]."""
    if usage is not None:
        prompt, completion = usage
        counts = {"prompt_tokens": prompt, "completion_tokens": completion}
        chunks = (*chunks, {"choices": [], "usage": {**counts, "total_tokens": sum(usage)}})
    lines = [f"data: {json.dumps({**CHUNK, **c})}\n\n" for c in chunks]
    return lines + (["data: [DONE]\n\n"] if done else [])


def text_chunks(*pieces: str, finish: str = "stop") -> list[dict[str, Any]]:
    """Chunks streaming `pieces` of text, then a finish reason."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return chunks


def tool_call_chunks(call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
    """Chunks streaming one tool call, its arguments in two pieces."""
    half = len(arguments) // 2
    return [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": arguments[:half]},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]


class FakeLLM:
    """Serves scripted replies in order and records each request and whether it was cut."""

    def __init__(self) -> None:
        self.port = free_port()
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.client_closed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        """The /v1 base URL to configure."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> "FakeLLM":
        """Listen on 127.0.0.1."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {
                k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(
                {"path": lines[0].split()[1], "headers": headers, "json": json.loads(body)}
            )
            reply = (
                self.replies.pop(0) if self.replies else Reply(status=500, body="no reply scripted")
            )
            status_line = f"HTTP/1.1 {reply.status} X\r\n"
            if reply.status >= 400:
                payload = reply.body.encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"{status_line}Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                return
            writer.write(
                f"{status_line}Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            for line in reply.lines:
                data = line.encode()
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
            if reply.hang:
                # keep the stream open until the client goes away
                if await reader.read(1) == b"":
                    self.client_closed.set()
                return
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_closed.set()
        finally:
            writer.close()
