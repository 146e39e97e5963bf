"""A second message in a busy thread: enqueue (default), interrupt or reject."""

import pytest

from agents.models import Run
from tests.conftest import collect_run, connect_user, send

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"steps": 5, "delay_ms": 60}


async def start_in(comm, thread_id, on_busy=None, options=SLOW, rid="r"):
    payload = {"agent": "stepper", "message": "go", "thread_id": thread_id, "options": options}
    if on_busy:
        payload["on_busy"] = on_busy
    await send(comm, {"type": "start_agent", "request_id": rid, "payload": payload})
    while True:
        frame = await comm.receive_json_from(timeout=5)
        if frame.get("request_id") == rid:
            assert frame["type"] == "run_accepted", frame
            return frame


async def events_until_terminal(comm, run_ids):
    """Collect frames until every run in run_ids ended; return them in arrival order."""
    frames, ended = [], set()
    while ended != set(run_ids):
        frame = await comm.receive_json_from(timeout=10)
        if "seq" in frame:
            frames.append(frame)
            if frame["type"] in {"agent_completed", "agent_error", "agent_cancelled"}:
                ended.add(frame["run_id"])
    return frames


async def test_enqueue_runs_the_second_after_the_first(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    first = await start_in(comm, None, rid="a")
    second = await start_in(comm, first["thread_id"], rid="b")
    assert second["thread_id"] == first["thread_id"]
    frames = await events_until_terminal(comm, [first["run_id"], second["run_id"]])
    order = [f["run_id"] for f in frames]
    # every event of the first run comes before any of the second
    assert order == [first["run_id"]] * order.count(first["run_id"]) + [
        second["run_id"]
    ] * order.count(second["run_id"])
    assert {f["type"] for f in frames if f["type"].startswith("agent_c")} == {"agent_completed"}
    await comm.disconnect()


async def test_interrupt_cancels_the_running_run_then_starts(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    first = await start_in(comm, None, rid="a")
    second = await start_in(
        comm, first["thread_id"], on_busy="interrupt", options={"steps": 1, "delay_ms": 0}, rid="b"
    )
    frames = await events_until_terminal(comm, [first["run_id"], second["run_id"]])
    first_end = [f for f in frames if f["run_id"] == first["run_id"]][-1]
    assert first_end["type"] == "agent_cancelled"
    assert first_end["data"]["reason"] == "interrupted by a newer message"
    second_events = [f for f in frames if f["run_id"] == second["run_id"]]
    assert second_events[0]["seq"] > first_end["seq"]
    assert second_events[-1]["type"] == "agent_completed"
    statuses = {
        r.pk: r.status async for r in Run.objects.filter(pk__in=[first["run_id"], second["run_id"]])
    }
    assert sorted(statuses.values()) == ["cancelled", "completed"]
    await comm.disconnect()


async def test_different_threads_run_side_by_side(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    a = await start_in(comm, None, options={"steps": 4, "delay_ms": 80}, rid="a")
    b = await start_in(comm, None, options={"steps": 4, "delay_ms": 80}, rid="b")
    assert a["thread_id"] != b["thread_id"]
    frames = await events_until_terminal(comm, [a["run_id"], b["run_id"]])
    order = [f["run_id"] for f in frames]
    # interleaved: the second run started before the first ended
    assert order.index(b["run_id"]) < len(order) - 1 - order[::-1].index(a["run_id"])
    await comm.disconnect()


async def test_stopping_a_queued_run_still_tells_its_story(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    first = await start_in(comm, None, rid="a")
    queued = await start_in(comm, first["thread_id"], rid="b")
    await send(comm, {"type": "stop_agent", "payload": {"run_id": queued["run_id"]}})
    events = await collect_run(comm, queued["run_id"])
    assert [e["type"] for e in events] == ["agent_started", "agent_cancelled"]
    assert (await Run.objects.aget(pk=queued["run_id"])).status == "cancelled"
    await registry.shutdown()
    await comm.disconnect()
