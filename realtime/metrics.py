"""Prometheus metrics of the transport: sockets, frames, delivery (multiprocess-safe)."""

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS_OPEN = Gauge(
    "chatplatform_connections_open", "WebSockets open now", multiprocess_mode="livesum"
)
CONNECTIONS_OPENED = Counter("chatplatform_connections_opened_total", "WebSockets accepted")
EVENTS_DELIVERED = Counter("chatplatform_events_delivered_total", "Agent events sent to sockets")
DELIVERY_FAILURES = Counter(
    "chatplatform_delivery_failures_total",
    "Events stored but not published to the channel layer (clients get them by resume)",
)
OUTBOX_EVENTS = Gauge(
    "chatplatform_outbox_events",
    "Events stored and sent to this process's sockets, still queued for the other processes",
    multiprocess_mode="livesum",
)
GAP_FILLS = Counter(
    "chatplatform_gap_fills_total", "Times a socket's stream had a hole filled from storage"
)
EVENTS_GAP_FILLED = Counter(
    "chatplatform_events_gap_filled_total", "Events sent to a socket from storage to fill a hole"
)
REPLAYS = Counter("chatplatform_replays_total", "resume requests served")
REPLAYED_EVENTS = Counter("chatplatform_replayed_events_total", "Events sent by resume")
PROTOCOL_ERRORS = Counter(
    "chatplatform_protocol_errors_total", "Error frames sent to clients, by code", ["code"]
)
FRAMES_TOO_LARGE = Counter(
    "chatplatform_frames_too_large_total", "Sockets closed (4009) for an oversized frame"
)
SENDS_AFTER_CLOSE = Counter(
    "chatplatform_sends_after_close_total",
    "Frames not sent because the socket was already closing (a client left mid-send)",
)
STREAM_FAILURES = Counter(
    "chatplatform_stream_failures_total",
    "Sockets closed (4011) because their stream could not be kept gapless (client resumes)",
)
EMIT_TO_SOCKET = Histogram(
    "chatplatform_emit_to_socket_seconds",
    "From the emitter being called to the event written to a socket",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SLOW_CLIENTS_DROPPED = Counter(
    "chatplatform_slow_clients_dropped_total",
    "Sockets aborted because the client stopped reading (outbound buffer over its bound)",
)
