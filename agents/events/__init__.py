"""The event pipeline: one agent event from the runtime to storage and to its publisher.

Schema and sanitising (`schema`, `sanitize`), the wire envelope and frame
(`frames`), the emitter the runtime calls (`emitter`), the batching writer that
numbers, stores and then publishes (`writer`, `store`), and the reads a replay
or gap fill needs (`replay`). Transports (realtime/) subscribe to what the
writer publishes; nothing here knows about sockets.
"""
