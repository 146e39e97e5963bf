"""The chat page and its JSON reads, with the Django test client."""

import json

import pytest
from django.contrib.auth import get_user_model

from agents.events.store import event_record
from agents.models import Agent, Run, Thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_thread(seeded):
    alice = get_user_model().objects.create_user("alice", password="pw")
    thread = Thread.objects.create(user=alice, title="sums")
    run = Run.objects.create(
        user=alice, agent=Agent.objects.get(name="triage"), thread=thread, message="m"
    )
    event_record(
        user_id=alice.pk, run_id=str(run.pk), event_type="agent_started", data={"message": "m"}
    )
    event_record(
        user_id=alice.pk, run_id=str(run.pk), event_type="partial_result", data={"delta": "x"}
    )
    return alice, thread, run


def test_chat_page_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_login_page_renders(client):
    page = client.get("/accounts/login/").content.decode()
    assert 'for="id_username"' in page and 'for="id_password"' in page


def test_chat_page_boots_with_the_users_agents_and_threads(client, alice_thread):
    alice, thread, _ = alice_thread
    Agent.objects.exclude(name="triage").update(enabled=False)
    client.force_login(alice)
    page = client.get("/").content.decode()
    boot = json.loads(
        page.split('<script id="boot" type="application/json">')[1].split("</script>")[0]
    )
    assert boot["user_id"] == str(alice.pk)
    assert [a["name"] for a in boot["agents"]] == ["triage"]
    assert [t["id"] for t in boot["threads"]] == [str(thread.id)]
    assert 'aria-live="polite"' in page and 'for="message"' in page


def test_thread_history_returns_the_threads_events(client, alice_thread):
    alice, thread, run = alice_thread
    client.force_login(alice)
    body = client.get(f"/api/threads/{thread.id}/events/").json()
    assert [e["type"] for e in body["events"]] == ["agent_started", "partial_result"]
    assert {e["run_id"] for e in body["events"]} == {str(run.pk)}
    assert client.get("/api/threads/").json()["threads"][0]["id"] == str(thread.id)


@pytest.mark.parametrize("thread_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_thread_is_404(client, alice_thread, thread_id):
    client.force_login(alice_thread[0])
    assert client.get(f"/api/threads/{thread_id}/events/").status_code == 404


def test_another_users_thread_is_404(client, alice_thread):
    _, thread, _ = alice_thread
    bob = get_user_model().objects.create_user("bob", password="pw")
    client.force_login(bob)
    assert client.get(f"/api/threads/{thread.id}/events/").status_code == 404


def test_static_assets_are_served(client, alice_thread):
    response = client.get("/static/chat/chat.js")
    assert response.status_code == 200
    assert b"resume_complete" in b"".join(response.streaming_content)


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
