"""Who may connect: session cookie, bearer token, 4401 otherwise, Origin checked."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from realtime.models import ApiToken
from realtime.tokens import token_authenticate, token_revoke

pytestmark = pytest.mark.django_db(transaction=True)


async def handshake(headers):
    from tests.conftest import _served

    comm = WebsocketCommunicator(_served["application"], "/ws/agents/", headers=headers)
    connected, code = await comm.connect(timeout=10)
    return comm, connected, code


async def expect_4401(headers):
    comm, connected, _ = await handshake(headers)
    assert connected  # accepted, then closed with the application's code
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"Bearer cpt_not-a-real-token")],
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b"Bearer " + b"x" * 5000)],
        [(b"cookie", b"sessionid=forged")],
    ],
    ids=["nothing", "empty-bearer", "unknown-token", "basic-auth", "huge-token", "forged-cookie"],
)
async def test_unauthenticated_upgrades_are_closed_4401(seeded, headers):
    await expect_4401(headers)


async def test_expired_token_is_refused(amake_user):
    user = await amake_user()
    await ApiToken.objects.filter(user=user).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    await expect_4401([(b"authorization", f"Bearer {user.token}".encode())])


async def test_revoked_token_is_refused(amake_user):
    user = await amake_user()
    token = await ApiToken.objects.aget(user=user)
    await database_sync_to_async(token_revoke)(token_id=token.pk)
    await expect_4401([(b"authorization", f"Bearer {user.token}".encode())])


async def test_inactive_users_token_is_refused(amake_user):
    user = await amake_user()
    await get_user_model().objects.filter(pk=user.pk).aupdate(is_active=False)
    await expect_4401([(b"authorization", f"Bearer {user.token}".encode())])


async def test_valid_token_connects_as_its_user(amake_user, registry):
    user = await amake_user()
    comm, connected, _ = await handshake([(b"authorization", f"Bearer {user.token}".encode())])
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello["user_id"] == str(user.pk)
    await comm.disconnect()


async def test_session_cookie_connects_as_the_logged_in_user(amake_user, registry):
    user = await amake_user()
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    comm, connected, _ = await handshake(
        [(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1:8000")]
    )
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello["user_id"] == str(user.pk)
    await comm.disconnect()


async def test_foreign_origin_is_rejected_before_accept(amake_user):
    user = await amake_user()
    _, connected, _ = await handshake(
        [
            (b"authorization", f"Bearer {user.token}".encode()),
            (b"origin", b"https://evil.example"),
        ]
    )
    assert not connected  # daphne turns this refusal into HTTP 403 (see test_e2e)


def test_issue_token_command_prints_a_working_token(seeded, capsys):
    call_command("issue_token", "carol", "--create-user", "--days", "5")
    token = capsys.readouterr().out.strip()
    user = token_authenticate(token)
    assert user is not None and user.username == "carol"
    stored = ApiToken.objects.get(user=user)
    assert token not in (stored.digest, stored.prefix)  # only a digest is kept
    assert timedelta(days=4) < stored.expires_at - timezone.now() <= timedelta(days=5)


def test_issue_token_for_unknown_user_without_create_fails(seeded):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user named"):
        call_command("issue_token", "nobody")


def test_many_tokens_are_checked_in_one_call(make_user):
    from django.utils import timezone

    from realtime.models import ApiToken
    from realtime.tokens import tokens_authenticate

    good, revoked, expired, inactive = (make_user() for _ in range(4))
    token_revoke(token_id=ApiToken.objects.get(user=revoked).pk)
    ApiToken.objects.filter(user=expired).update(expires_at=timezone.now())
    inactive.is_active = False
    inactive.save()
    raws = [good.token, revoked.token, expired.token, inactive.token, "cpt_unknown", "junk", ""]
    result = tokens_authenticate(raws)
    assert result[good.token].pk == good.pk
    assert [result[raw] for raw in raws[1:]] == [None] * 6
