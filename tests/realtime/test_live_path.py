"""The failure this product exists to end: a new user's run reaches every tab, unwired by hand."""

import pytest

from agents.events.emitter import EventEmitter
from agents.events.schema import check_envelope
from agents.session import UserAgentSession
from tests.conftest import astored_frames, collect_run, connect_user, start

pytestmark = pytest.mark.django_db(transaction=True)

CALCULATE_TYPES = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_thinking",
    "partial_result",
    "agent_completed",
]


async def test_brand_new_user_receives_every_event_of_their_run(amake_user, registry, process):
    # given a user who has never connected (no session exists for them anywhere)
    user = await amake_user()
    assert registry.peek(user.pk) is None

    # when they connect and start a run, with nothing wired by hand
    comm, hello = await connect_user(user)
    accepted = await start(comm, "calculate 6*7")
    events = await collect_run(comm, accepted["run_id"])

    # then every stored event of the run reached the socket, in order, exactly once
    assert [e["type"] for e in events] == CALCULATE_TYPES
    assert events == await astored_frames(accepted["run_id"])
    assert [e["seq"] for e in events] == list(range(hello["last_seq"] + 1, hello["last_seq"] + 8))
    assert events[-1]["data"]["result"] == "6*7 = 42"
    for event in events:
        check_envelope(event)
    # and the session the registry built carries its emitter from birth
    session = registry.peek(user.pk)
    assert isinstance(session, UserAgentSession)
    assert isinstance(session.emitter, EventEmitter)
    assert session.emitter.user_id == user.pk
    assert session.emitter.writer is process.writer
    await comm.disconnect()


async def test_two_tabs_of_a_new_user_both_receive_every_event(amake_user, registry):
    user = await amake_user()
    tab1, _ = await connect_user(user)
    tab2, _ = await connect_user(user)

    accepted = await start(tab1, "calculate 6*7")
    seen1 = await collect_run(tab1, accepted["run_id"])
    seen2 = await collect_run(tab2, accepted["run_id"])

    stored = await astored_frames(accepted["run_id"])
    assert seen1 == stored
    assert seen2 == stored
    assert len(stored) == len(CALCULATE_TYPES)
    await tab1.disconnect()
    await tab2.disconnect()


async def test_other_users_tabs_receive_nothing(amake_user, registry):
    alice, bob = await amake_user(), await amake_user()
    alice_tab, _ = await connect_user(alice)
    bob_tab, _ = await connect_user(bob)

    accepted = await start(alice_tab, "calculate 1+1")
    await collect_run(alice_tab, accepted["run_id"])

    assert await bob_tab.receive_nothing(timeout=0.3)
    await alice_tab.disconnect()
    await bob_tab.disconnect()


async def test_session_cannot_exist_without_an_emitter(amake_user, registry):
    user = await amake_user()
    with pytest.raises(TypeError):
        UserAgentSession(  # type: ignore[call-arg]
            user_id=user.pk, session_id=1, max_concurrent_runs=3
        )
    with pytest.raises(TypeError):
        UserAgentSession(
            user_id=user.pk,
            session_id=1,
            emitter=None,  # type: ignore[arg-type]
            control=None,  # type: ignore[arg-type]
            max_concurrent_runs=3,
        )
    # and there is no way to swap it in later
    assert UserAgentSession.emitter.fset is None
    assert not [name for name in dir(UserAgentSession) if name.startswith("set_")]
    session = await registry.get_user_session(user.pk)
    with pytest.raises(AttributeError):
        session.emitter = None  # type: ignore[misc]
