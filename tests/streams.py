"""A SocketStream's far end for tests: records the seqs sent and the failures reported."""

import json

from agents.events.frames import encode_frame
from realtime.stream import SocketStream


class Socket:
    """The sending end of SocketStreams: records every seq it is given, and failures."""

    def __init__(self):
        self.seqs = []
        self.failures = []

    async def send(self, text):
        self.seqs.append(json.loads(text)["seq"])

    def stream(self, user_id):
        """Return a real SocketStream of the user that sends here."""
        return SocketStream(user_id=user_id, send=self.send, on_failure=self.failures.append)


async def emitted(session, ref, count):
    """Emit `count` events through the session's real emitter; return their frames by seq."""
    frames = {}
    for i in range(count):
        envelope = await session.emitter.emit(ref, "partial_result", {"delta": str(i)})
        frames[envelope["seq"]] = encode_frame(envelope)
    return frames
