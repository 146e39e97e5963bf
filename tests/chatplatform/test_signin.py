"""Sign-in throttling (django-axes) and the Content-Security-Policy header."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery"


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password=PASSWORD, is_staff=True)


def sign_in(client, password, url=None, username="alice"):
    return client.post(url or reverse("login"), {"username": username, "password": password})


@override_settings(AXES_FAILURE_LIMIT=5)
def test_after_the_limit_even_the_right_password_is_refused(client, alice):
    for _ in range(4):
        assert sign_in(client, "wrong").status_code == 200  # the form again, with its error
    locked = sign_in(client, "wrong")
    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode()
    refused = sign_in(client, PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session


@override_settings(AXES_FAILURE_LIMIT=5)
def test_a_success_resets_the_count(client, alice):
    for _ in range(4):
        sign_in(client, "wrong")
    assert sign_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert sign_in(client, "wrong").status_code == 200
    assert sign_in(client, PASSWORD).status_code == 302


@override_settings(AXES_FAILURE_LIMIT=3)
def test_the_admin_sign_in_is_throttled_too(client, alice):
    url = reverse("admin:login")
    for _ in range(3):
        sign_in(client, "wrong", url=url)
    assert sign_in(client, PASSWORD, url=url).status_code == 429


def test_every_page_carries_a_strict_csp(client, alice):
    client.force_login(alice)
    for url in ("/", reverse("login"), "/admin/", "/healthz"):
        policy = client.get(url).headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'", url
        assert directives["style-src"] == "'self'", url
        assert directives["connect-src"] == "'self'", url
        assert directives["frame-ancestors"] == "'none'", url
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
