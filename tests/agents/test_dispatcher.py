"""The tool dispatcher: timeouts, errors and sanitising become events, never stuck runs."""

import pytest

from agents.events.sanitize import REDACTED
from agents.models import Run, RunEvent
from tests.conftest import collect_run, connect_user, start

pytestmark = pytest.mark.django_db(transaction=True)


async def scripted_run(user, calls, **options):
    comm, _ = await connect_user(user)
    accepted = await start(comm, "x", agent="scripted", options={"calls": calls, **options})
    events = await collect_run(comm, accepted["run_id"])
    await comm.disconnect()
    return accepted, events


def tool_events(events):
    return [e for e in events if e["type"].startswith("tool_")]


async def test_tool_over_its_timeout_becomes_tool_error_and_the_run_goes_on(amake_user, registry):
    # the scripted agent's row sets tool_timeout_seconds=0.3; the tool would sleep 60 s
    _, events = await scripted_run(
        await amake_user(), [{"tool": "slow", "parameters": {"seconds": 60}}, {"tool": "echo"}]
    )
    _, error, *rest = tool_events(events)
    assert error["type"] == "tool_error"
    assert error["data"]["error"] == "tool 'slow' timed out after 0.3 s"
    assert 300 <= error["data"]["duration_ms"] < 5000
    assert [e["type"] for e in rest] == ["tool_executing", "tool_completed"]
    assert events[-1]["type"] == "agent_completed"


async def test_tool_exception_is_reported_without_internal_detail(amake_user, registry):
    _, events = await scripted_run(await amake_user(), [{"tool": "broken"}])
    error = tool_events(events)[1]
    assert error["data"]["error"] == "tool 'broken' failed with an internal error"
    assert "internal detail" not in str(events)
    assert events[-1]["type"] == "agent_completed"


async def test_tool_not_allowed_for_the_agent_is_a_tool_error(amake_user, registry):
    _, events = await scripted_run(await amake_user(), [{"tool": "clock"}, {"tool": "nosuch"}])
    errors = [e["data"]["error"] for e in tool_events(events) if e["type"] == "tool_error"]
    assert errors == [
        "tool 'clock' is not available to this agent",
        "tool 'nosuch' is not available to this agent",
    ]


async def test_parameters_and_results_are_sanitised_in_events_and_storage(amake_user, registry):
    value = {"api_key": "sk-live-123", "rows": list(range(30)), "text": "r" * 800}
    parameters = {"password": "hunter2", "query": "q" * 300, "value": value}
    accepted, events = await scripted_run(
        await amake_user(), [{"tool": "echo", "parameters": parameters}]
    )
    executing, completed = tool_events(events)
    assert executing["data"]["parameters"] == {
        "password": REDACTED,
        "query": "q" * 200,
        "value": {"api_key": REDACTED, "rows": list(range(30)), "text": "r" * 200},
    }
    assert completed["data"]["result"] == {
        "api_key": REDACTED,
        "rows": list(range(10)),
        "text": "r" * 500,
    }
    stored = [
        e.payload async for e in RunEvent.objects.filter(run_id=accepted["run_id"]).order_by("seq")
    ]
    assert "hunter2" not in str(stored) and "sk-live-123" not in str(stored)
    assert stored[1] == executing["data"] and stored[2] == completed["data"]


async def test_run_over_its_time_limit_fails_with_timeout(amake_user, registry):
    from agents.models import Agent

    await Agent.objects.filter(name="scripted").aupdate(max_run_seconds=0.3)
    accepted, events = await scripted_run(await amake_user(), [], hang=True)
    assert [e["type"] for e in events] == ["agent_started", "agent_error"]
    assert events[-1]["data"]["error"]["code"] == "timeout"
    run = await Run.objects.aget(pk=accepted["run_id"])
    assert run.status == "failed" and run.error_code == "timeout"


async def test_cancel_during_a_tool_reports_the_tool_cancelled(amake_user, registry):
    user = await amake_user()
    comm, _ = await connect_user(user)
    from agents.models import Agent

    await Agent.objects.filter(name="scripted").aupdate(tool_timeout_seconds=60)
    accepted = await start(
        comm,
        "x",
        agent="scripted",
        options={"calls": [{"tool": "slow", "parameters": {"seconds": 60}}]},
    )
    seen = []
    while not seen or seen[-1]["type"] != "tool_executing":
        seen.append(await comm.receive_json_from(timeout=5))
    session = registry.peek(user.pk)
    await session.cancel_run(accepted["run_id"])
    seen += await collect_run(comm, accepted["run_id"])
    assert [e["type"] for e in seen] == [
        "agent_started",
        "tool_executing",
        "tool_error",
        "agent_cancelled",
    ]
    assert seen[2]["data"]["error"] == "cancelled"
    await comm.disconnect()


async def test_the_settings_ceiling_bounds_every_run(amake_user, registry, settings):
    settings.AGENT_RUN_TIMEOUT_SECONDS = 0.3  # the agent's own max_run_seconds is 600
    _, events = await scripted_run(await amake_user(), [], hang=True)
    assert events[-1]["data"]["error"]["code"] == "timeout"
