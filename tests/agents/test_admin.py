"""Every admin page, with the Django test client: lists, filters, detail pages, actions."""

import re

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from agents.control import CANCEL_RUN, END_SESSION, process_group
from agents.events.store import event_record
from agents.models import Agent, AgentSession, Connection, InputRequest, Run, RunEvent, Thread
from realtime.models import ApiToken
from realtime.tokens import token_authenticate, token_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, seeded):
    admin_user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin_user)
    return client


@pytest.fixture
def history(seeded):
    user = get_user_model().objects.create_user("alice", password="pw")
    session = AgentSession.objects.create(user=user, process="proc-a-1-aaaaaa")
    Connection.objects.create(
        id="c1", user=user, session=session, process="proc-a-1-aaaaaa", auth="cookie"
    )
    Connection.objects.create(
        id="c2",
        user=user,
        session=session,
        process="proc-a-1-aaaaaa",
        auth="token",
        closed_at=timezone.now(),
    )
    thread = Thread.objects.create(user=user, title="sums")
    done = Run.objects.create(
        user=user,
        session=session,
        agent=Agent.objects.get(name="triage"),
        thread=thread,
        message="calculate 6*7",
        status="completed",
        result="6*7 = 42",
        process="proc-a-1-aaaaaa",
    )
    for kind, data in [
        ("agent_started", {"message": "calculate 6*7"}),
        (
            "tool_executing",
            {
                "tool_name": "calculator",
                "tool_call_id": "call_1",
                "parameters": {"expression": "6*7"},
            },
        ),
        ("agent_completed", {"status": "completed", "result": "6*7 = 42", "duration_ms": 5}),
    ]:
        event_record(user_id=user.pk, run_id=str(done.pk), event_type=kind, data=data)
    going = Run.objects.create(
        user=user,
        session=session,
        agent=Agent.objects.get(name="stepper"),
        thread=thread,
        message="go",
        status="running",
        process="proc-a-1-aaaaaa",
    )
    asked = InputRequest.objects.create(
        id="in_asked",
        run=going,
        user=user,
        kind="tool_approval",
        message="Allow the tool calculator?",
        request={"tool_name": "calculator", "tool_call_id": "call_2", "parameters": {"x": 1}},
        expires_at=timezone.now(),
    )
    decided = InputRequest.objects.create(
        id="in_decided",
        run=done,
        user=user,
        kind="question",
        message="Which city?",
        request={},
        expires_at=timezone.now(),
        outcome="answered",
        decided_by="user",
        decided_at=timezone.now(),
        decided_connection="conn42",
        response={"answer": "Paris", "api_token": "s3cr3t-value"},
    )
    return {
        "user": user,
        "session": session,
        "done": done,
        "going": going,
        "asked": asked,
        "decided": decided,
    }


@pytest.mark.parametrize(
    "name",
    [
        "agent",
        "agentsession",
        "run",
        "runevent",
        "thread",
        "connection",
        "workerprocess",
        "knowledgearticle",
        "inputrequest",
    ],
)
def test_changelists_render(staff_client, history, name):
    response = staff_client.get(reverse(f"admin:agents_{name}_changelist"))
    assert response.status_code == 200


def test_token_changelist_renders_without_secrets(staff_client, history):
    raw = token_issue(user=history["user"], days=1)
    response = staff_client.get(reverse("admin:realtime_apitoken_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert raw[:10] in body and raw not in body
    assert ApiToken.objects.get().digest not in body


def test_run_page_links_its_events_listed_in_seq_order_to_the_millisecond(staff_client, history):
    done = history["done"]
    response = staff_client.get(reverse("admin:agents_run_change", args=[done.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="_save"' not in body  # nothing to save: history is read-only
    assert "agent_started" not in body  # events are not inlined: a long run stays readable
    link = f"{reverse('admin:agents_runevent_changelist')}?run__id__exact={done.pk}"
    assert f'href="{link}"' in body and "3 events, in seq order" in body
    created = done.created_at
    assert f"{created:%H:%M:%S}.{created.microsecond // 1000:03d} UTC" in body
    events = staff_client.get(link).content.decode()
    started, executing, completed = (
        events.index(t) for t in ("agent_started", "tool_executing", "agent_completed")
    )
    assert started < executing < completed
    assert "&quot;expression&quot;: &quot;6*7&quot;" in events  # the data, on one line
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} UTC", events)
    assert (
        staff_client.post(
            reverse("admin:agents_run_change", args=[history["done"].pk]), {}
        ).status_code
        == 403
    )


def test_run_filters(staff_client, history):
    url = reverse("admin:agents_run_changelist")
    assert (
        str(history["going"].pk)
        in staff_client.get(url, {"status__exact": "running"}).content.decode()
    )
    assert (
        str(history["done"].pk)
        not in staff_client.get(url, {"status__exact": "running"}).content.decode()
    )
    by_agent = staff_client.get(
        url, {"agent__id__exact": Agent.objects.get(name="triage").pk}
    ).content.decode()
    assert str(history["done"].pk) in by_agent and str(history["going"].pk) not in by_agent
    assert staff_client.get(url, {"created_at__year": timezone.now().year}).status_code == 200


def test_history_cannot_be_added_or_deleted(staff_client, history):
    assert staff_client.get(reverse("admin:agents_runevent_add")).status_code == 403
    assert staff_client.get(reverse("admin:agents_run_add")).status_code == 403
    event = RunEvent.objects.first()
    assert (
        staff_client.get(reverse("admin:agents_runevent_delete", args=[event.pk])).status_code
        == 403
    )
    page = staff_client.get(
        reverse("admin:agents_runevent_change", args=[event.pk])
    ).content.decode()
    assert 'name="_save"' not in page


def test_session_list_counts_runs_and_live_connections_and_searches(staff_client, history):
    url = reverse("admin:agents_agentsession_changelist")
    body = staff_client.get(url, {"q": "alice"}).content.decode()
    assert '<td class="field-run_count">2</td>' in body
    assert '<td class="field-live_connections">1</td>' in body
    assert (
        "alice"
        not in staff_client.get(url, {"q": "nobody"}).content.decode().split("result_list")[-1]
    )


def test_end_session_action_uses_the_service_and_tells_the_process(staff_client, history):
    layer = get_channel_layer()
    from asgiref.sync import async_to_sync

    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(process_group("proc-a-1-aaaaaa"), listener)
    response = staff_client.post(
        reverse("admin:agents_agentsession_changelist"),
        {"action": "end_sessions", "_selected_action": [history["session"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    history["session"].refresh_from_db()
    assert history["session"].status == "ended" and history["session"].ended_at is not None
    message = async_to_sync(layer.receive)(listener)
    assert message == {
        "type": END_SESSION,
        "user_id": history["user"].pk,
        "session_id": history["session"].pk,
    }


def test_cancel_runs_action_asks_only_running_runs(staff_client, history):
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(process_group("proc-a-1-aaaaaa"), listener)
    response = staff_client.post(
        reverse("admin:agents_run_changelist"),
        {"action": "cancel_runs", "_selected_action": [history["done"].pk, history["going"].pk]},
        follow=True,
    )
    assert "cancel requested for 1 running runs" in response.content.decode().lower()
    message = async_to_sync(layer.receive)(listener)
    assert message["type"] == CANCEL_RUN and message["run_id"] == str(history["going"].pk)


def test_agent_is_editable_and_actions_toggle_it(staff_client, history):
    agent = Agent.objects.get(name="stepper")
    page = staff_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    assert 'name="_save"' in page and 'name="allowed_tools"' in page
    staff_client.post(
        reverse("admin:agents_agent_changelist"),
        {"action": "disable", "_selected_action": [agent.pk]},
    )
    agent.refresh_from_db()
    assert agent.enabled is False


def test_runs_list_shows_user_agent_message_and_start_and_filters_by_user(staff_client, history):
    bob = get_user_model().objects.create_user("bob", password="pw")
    Run.objects.create(
        user=bob,
        agent=Agent.objects.get(name="triage"),
        thread=Thread.objects.create(user=bob),
        message="bob's question " + "x" * 200,
    )
    url = reverse("admin:agents_run_changelist")
    page = staff_client.get(url).content.decode()
    for column in ("user", "agent", "message", "status", "started", "duration"):
        assert f"column-{column}" in page or f">{column.capitalize()}<" in page, column
    assert "bob&#x27;s question xxx" in page and "x" * 100 not in page  # shortened
    short = str(history["done"].pk)[:8]
    assert f">{short}</a>" in page  # a short id that does not wrap; its link holds the whole
    only_bob = staff_client.get(url, {"user__id__exact": bob.pk}).content.decode()
    assert "bob&#x27;s question" in only_bob and "calculate 6*7" not in only_bob
    assert "By user" in page or "by user" in page


def test_a_users_page_links_to_their_runs_sessions_and_inputs(staff_client, history):
    user = history["user"]
    page = staff_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    runs = f"{reverse('admin:agents_run_changelist')}?user__id__exact={user.pk}"
    sessions = f"{reverse('admin:agents_agentsession_changelist')}?user__id__exact={user.pk}"
    assert f'href="{runs}"' in page and "2 runs" in page
    assert f'href="{sessions}"' in page and "1 sessions" in page
    assert "2 input requests" in page
    listed = staff_client.get(runs).content.decode()
    assert str(history["done"].pk)[:8] in listed


def test_a_token_page_is_read_only_with_a_revoke_button(staff_client, history):
    raw = token_issue(user=history["user"], days=1)
    token = ApiToken.objects.get()
    url = reverse("admin:realtime_apitoken_change", args=[token.pk])
    page = staff_client.get(url).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    revoke = reverse("admin:realtime_apitoken_revoke", args=[token.pk])
    assert f'action="{revoke}"' in page and "Revoke this token" in page
    assert staff_client.get(revoke).status_code == 405  # a GET changes nothing
    assert token_authenticate(raw) is not None
    assert staff_client.post(revoke).status_code == 302
    assert token_authenticate(raw) is None
    assert "Revoke this token" not in staff_client.get(url).content.decode()


def test_agent_edits_are_checked_in_the_form(staff_client, history):
    agent = Agent.objects.get(name="assistant")
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    form = {
        "name": agent.name,
        "description": agent.description,
        "implementation": agent.implementation,
        "allowed_tools": '["calculator"]',
        "approval_tools": "[]",
        "tool_timeout_seconds": "30",
        "max_run_seconds": "600",
        "config": '{"model": "m"}',
    }
    for field, value, complaint in [
        ("implementation", "agents.runtime.nothing.Here", "cannot be imported"),
        ("implementation", "agents.models.Run", "is not a subclass of agents.runtime.base.Agent"),
        ("allowed_tools", '["rm_rf"]', "Unknown tools: rm_rf"),
        ("config", '{"modle": "m"}', "Additional properties are not allowed"),
        ("config", '{"max_tool_rounds": -1}', "max_tool_rounds"),
    ]:
        response = staff_client.post(url, {**form, field: value})
        assert response.status_code == 200, value
        assert complaint in response.content.decode(), value
    assert staff_client.post(url, form).status_code == 302
    agent.refresh_from_db()
    assert agent.config == {"model": "m"}


def test_revoke_token_action(staff_client, history):
    raw = token_issue(user=history["user"], days=1)
    token = ApiToken.objects.get()
    staff_client.post(
        reverse("admin:realtime_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert token_authenticate(raw) is None


def test_admin_requires_staff(client, history):
    client.force_login(history["user"])
    assert client.get(reverse("admin:agents_run_changelist")).status_code == 302


def test_inputs_are_listed_filtered_and_read_only_with_who_decided(staff_client, history):
    url = reverse("admin:agents_inputrequest_changelist")
    pending = staff_client.get(url, {"outcome__exact": "pending"}).content.decode()
    assert "in_asked" in pending and "in_decided" not in pending
    questions = staff_client.get(url, {"kind__exact": "question"}).content.decode()
    assert "in_decided" in questions and "in_asked" not in questions
    by_user = staff_client.get(url, {"q": "alice"}).content.decode()
    assert "in_asked" in by_user and "in_decided" in by_user
    page = staff_client.get(
        reverse("admin:agents_inputrequest_change", args=["in_decided"])
    ).content.decode()
    assert "conn42" in page and "Paris" in page
    assert "s3cr3t-value" not in page  # secrets in a response are shown redacted
    assert 'name="_save"' not in page
    assert staff_client.get(reverse("admin:agents_inputrequest_add")).status_code == 403


def test_run_page_lists_its_inputs_and_usage(staff_client, history):
    Run.objects.filter(pk=history["done"].pk).update(input_tokens=120, output_tokens=30)
    page = staff_client.get(
        reverse("admin:agents_run_change", args=[history["done"].pk])
    ).content.decode()
    assert "in_decided" in page and "Which city?" in page
    assert "120" in page and "30" in page
    listing = staff_client.get(reverse("admin:agents_run_changelist")).content.decode()
    assert "120 / 30" in listing


def test_approval_tools_are_validated_in_the_admin(staff_client, history):
    agent = Agent.objects.get(name="triage")
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    form = {
        "name": agent.name,
        "description": agent.description,
        "implementation": agent.implementation,
        "allowed_tools": '["calculator", "clock"]',
        "tool_timeout_seconds": "30",
        "max_run_seconds": "600",
        "config": "{}",
        "enabled": "on",
    }
    for bad, complaint in [
        ('["rm_rf"]', "Unknown tools: rm_rf"),
        ('["kb_search"]', "Not in allowed tools: kb_search"),
        ('"calculator"', "Give a JSON list of tool names"),
    ]:
        response = staff_client.post(url, {**form, "approval_tools": bad})
        assert response.status_code == 200, bad  # the form again, with the error
        assert complaint in response.content.decode(), bad
    response = staff_client.post(url, {**form, "approval_tools": '["calculator"]'})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.approval_tools == ["calculator"]
