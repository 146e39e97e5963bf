"""The `llm` agent against a local server speaking OpenAI's streaming chat-completions protocol."""

import asyncio
import json

import pytest

from agents.models import Agent, Run, RunEvent
from tests.conftest import collect_run, connect_user, send, start
from tests.fake_llm import FakeLLM, Reply, sse, text_chunks, tool_call_chunks
from tests.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-test-secret-never-shown"


@pytest.fixture
async def llm(seeded, monkeypatch, settings):
    settings.LLM_STREAM_FLUSH_SECONDS = 0.05
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    fake = await FakeLLM().start()
    await Agent.objects.filter(name="assistant").aupdate(
        enabled=True,
        allowed_tools=["calculator", "clock"],
        config={
            "base_url": fake.base_url,
            "model": "test-model",
            "api_key_env": "TEST_LLM_KEY",
            "timeout_seconds": 2,
        },
    )
    yield fake
    await fake.stop()


async def ask(user, text="hello", **payload):
    comm, _ = await connect_user(user)
    accepted = await start(comm, text, agent="assistant", **payload)
    events = await collect_run(comm, accepted["run_id"])
    await comm.disconnect()
    return accepted, events


def deltas(events):
    return [e["data"]["delta"] for e in events if e["type"] == "partial_result"]


async def test_streamed_text_becomes_coalesced_partial_results_and_the_answer(
    amake_user, registry, llm
):
    pieces = [f"w{i} " for i in range(40)]
    llm.replies.append(Reply(lines=sse(*text_chunks(*pieces)), delay=0.005))
    accepted, events = await ask(await amake_user(), "say forty words")
    assert events[0]["type"] == "agent_started" and events[1]["type"] == "agent_thinking"
    assert "".join(deltas(events)) == "".join(pieces)  # nothing dropped
    assert 1 <= len(deltas(events)) <= 12  # ~0.2 s of streaming, at most one event per 50 ms
    assert events[-1]["type"] == "agent_completed"
    assert events[-1]["data"]["result"] == "".join(pieces)
    request = llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    assert request["json"]["model"] == "test-model" and request["json"]["stream"] is True
    assert request["json"]["messages"][-1] == {"role": "user", "content": "say forty words"}
    assert [t["function"]["name"] for t in request["json"]["tools"]] == ["calculator", "clock"]
    stored = [e.payload async for e in RunEvent.objects.filter(run_id=accepted["run_id"])]
    assert SECRET not in json.dumps(events) + json.dumps(stored)


async def test_tool_call_round_trip_goes_through_the_dispatcher(amake_user, registry, llm):
    llm.replies.append(
        Reply(lines=sse(*tool_call_chunks("call_x", "calculator", '{"expression": "6*7"}')))
    )
    llm.replies.append(Reply(lines=sse(*text_chunks("It is ", "42."))))
    _, events = await ask(await amake_user(), "what is 6*7?")
    types = [e["type"] for e in events]
    assert types[:5] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_thinking",
    ]
    assert events[2]["data"]["tool_name"] == "calculator"
    assert events[2]["data"]["parameters"] == {"expression": "6*7"}
    assert events[3]["data"]["result"]["value"] == 42
    assert events[-1]["data"]["result"] == "It is 42."
    second = llm.requests[1]["json"]["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": '{"expression": "6*7"}',
    }
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_x"
    assert json.loads(second[-1]["content"])["value"] == 42


async def test_tools_not_allowed_for_the_agent_are_not_offered_or_run(amake_user, registry, llm):
    await Agent.objects.filter(name="assistant").aupdate(allowed_tools=["clock"])
    llm.replies.append(
        Reply(lines=sse(*tool_call_chunks("call_y", "calculator", '{"expression": "1+1"}')))
    )
    llm.replies.append(Reply(lines=sse(*text_chunks("ok"))))
    _, events = await ask(await amake_user())
    assert [t["function"]["name"] for t in llm.requests[0]["json"]["tools"]] == ["clock"]
    errors = [e["data"]["error"] for e in events if e["type"] == "tool_error"]
    assert errors == ["tool 'calculator' is not available to this agent"]


async def test_tool_rounds_are_bounded(amake_user, registry, llm, settings):
    await Agent.objects.filter(name="assistant").aupdate(
        config={"base_url": llm.base_url, "model": "m", "max_tool_rounds": 1, "timeout_seconds": 2}
    )
    for _ in range(2):
        llm.replies.append(Reply(lines=sse(*tool_call_chunks("c", "clock", "{}"))))
    _, events = await ask(await amake_user())
    assert events[-1]["data"]["error"]["code"] == "llm_tool_rounds"
    assert "tools" not in llm.requests[1]["json"]  # the last round offers none


@pytest.mark.parametrize(
    ("replies", "code"),
    [
        ([Reply(status=401, body='{"error": {"message": "bad key"}}')], "llm_unauthorized"),
        ([Reply(status=429, headers={"Retry-After": "0.2"}, body="{}")] * 3, "llm_rate_limited"),
        ([Reply(status=503, body='{"error": {"message": "overloaded"}}')], "llm_server_error"),
        ([Reply(status=400, body='{"error": {"message": "bad model"}}')], "llm_bad_request"),
        ([Reply(lines=["data: {not json\n\n"])], "llm_bad_response"),
        ([Reply(lines=sse(*text_chunks("cut"))[:1])], "llm_bad_response"),
        ([Reply(lines=['data: {"error": {"message": "context too long"}}\n\n'])], "llm_error"),
        ([Reply(hang=True)], "llm_timeout"),
    ],
    ids=["401", "429-always", "503", "400", "malformed", "no-end", "error-chunk", "timeout"],
)
async def test_failures_end_the_run_with_a_clear_agent_error(
    amake_user, registry, llm, replies, code, caplog
):
    llm.replies.extend(replies)
    accepted, events = await ask(await amake_user())
    assert events[-1]["type"] == "agent_error"
    assert events[-1]["data"]["error"]["code"] == code
    message = events[-1]["data"]["error"]["message"]
    # Plain words and a reference for the user; no address, no server text.
    assert message.startswith("the language model") and "(reference " in message
    assert "127.0.0.1" not in message and "http" not in message
    ref = message.rsplit("(reference ", 1)[1].rstrip(")")
    run = await Run.objects.aget(pk=accepted["run_id"])
    assert (run.status, run.error_code) == ("failed", code)
    # The detail is in the admin (the run) and in the server log, under the same reference.
    assert run.error_message.startswith(f"ref {ref}: ") and llm.base_url in run.error_message
    logged = [r.getMessage() for r in caplog.records if f"ref={ref}" in r.getMessage()]
    assert logged and llm.base_url in logged[0]


async def test_connection_refused(amake_user, registry, llm):
    await Agent.objects.filter(name="assistant").aupdate(
        config={"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"}
    )
    _, events = await ask(await amake_user())
    assert events[-1]["data"]["error"]["code"] == "llm_unreachable"


async def test_429_is_retried_honouring_retry_after(amake_user, registry, llm):
    llm.replies.append(Reply(status=429, headers={"Retry-After": "0.3"}, body="{}"))
    llm.replies.append(Reply(lines=sse(*text_chunks("fine"))))
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, events = await ask(await amake_user())
    assert events[-1]["data"]["result"] == "fine"
    assert len(llm.requests) == 2 and loop.time() - started >= 0.3


async def test_stop_closes_the_upstream_stream_at_once(amake_user, registry, llm):
    llm.replies.append(Reply(lines=sse(*text_chunks("partial "), done=False)[:1], hang=True))
    user = await amake_user()
    comm, _ = await connect_user(user)
    accepted = await start(comm, "long answer", agent="assistant")
    seen = []
    while not any(e["type"] == "partial_result" for e in seen):
        seen.append(await comm.receive_json_from(timeout=5))
    await send(comm, {"type": "stop_agent", "payload": {"run_id": accepted["run_id"]}})
    seen += await collect_run(comm, accepted["run_id"])
    assert seen[-1]["type"] == "agent_cancelled"
    await asyncio.wait_for(llm.client_closed.wait(), 2)
    await comm.disconnect()


async def test_the_threads_conversation_is_sent_within_the_budget(amake_user, registry, llm):
    user = await amake_user()
    llm.replies.append(Reply(lines=sse(*text_chunks("first answer"))))
    first, _ = await ask(user, "first question")
    llm.replies.append(Reply(lines=sse(*text_chunks("second answer"))))
    await ask(user, "second question", thread_id=first["thread_id"])
    assert llm.requests[1]["json"]["messages"][1:] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    await Agent.objects.filter(name="assistant").aupdate(
        config={"base_url": llm.base_url, "model": "m", "context_chars": 10}
    )
    llm.replies.append(Reply(lines=sse(*text_chunks("third"))))
    await ask(user, "third question", thread_id=first["thread_id"])
    assert llm.requests[2]["json"]["messages"][1:] == [
        {"role": "user", "content": "third question"}
    ]


async def test_usage_is_summed_stored_on_the_run_shown_and_counted(amake_user, registry, llm):
    from prometheus_client import REGISTRY

    def input_tokens():
        labels = {"agent": "assistant", "direction": "input"}
        return REGISTRY.get_sample_value("chatplatform_llm_tokens_total", labels) or 0.0

    before = input_tokens()
    llm.replies.append(
        Reply(
            lines=sse(
                *tool_call_chunks("call_u", "calculator", '{"expression": "2+2"}'), usage=(11, 4)
            )
        )
    )
    llm.replies.append(Reply(lines=sse(*text_chunks("4"), usage=(30, 2))))
    accepted, events = await ask(await amake_user(), "2+2?")
    assert llm.requests[0]["json"]["stream_options"] == {"include_usage": True}
    assert events[-1]["data"]["usage"] == {"input_tokens": 41, "output_tokens": 6}
    run = await Run.objects.aget(pk=accepted["run_id"])
    assert (run.input_tokens, run.output_tokens) == (41, 6)
    assert input_tokens() - before == 41


async def test_a_tool_needing_approval_waits_and_a_rejection_reaches_the_model(
    amake_user, registry, llm
):
    await Agent.objects.filter(name="assistant").aupdate(approval_tools=["calculator"])
    call = tool_call_chunks("call_r", "calculator", '{"expression": "6*7"}')
    llm.replies += [Reply(lines=sse(*call)), Reply(lines=sse(*text_chunks("Fine.")))]
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "6*7?", agent="assistant")
    while (asked := await comm.receive_json_from(timeout=10))["type"] != "input_requested":
        pass
    assert asked["data"]["tool_name"] == "calculator"
    assert asked["data"]["tool_call_id"].startswith("call_")
    payload = {
        "interrupt_id": asked["data"]["interrupt_id"],
        "decision": "reject",
        "message": "do it by hand",
    }
    await send(comm, {"type": "resolve_input", "request_id": "x", "payload": payload})
    events = await collect_run(comm, accepted["run_id"])
    await comm.disconnect()
    assert [e["type"] for e in events][:3] == ["input_resolved", "tool_error", "agent_thinking"]
    assert events[0]["data"]["outcome"] == "rejected"
    tool_message = llm.requests[1]["json"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_r"
    assert "rejected" in tool_message["content"] and "do it by hand" in tool_message["content"]
    assert events[-1]["data"]["result"] == "Fine."
