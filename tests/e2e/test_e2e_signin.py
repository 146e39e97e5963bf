"""Sign-in throttling holds across daphne processes sharing PostgreSQL."""

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.daphne import Daphne, manage, postgres_env
from tests.services import require_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "right-horse-battery"


def sign_in(server: Daphne, username: str, password: str) -> int:
    """Post the sign-in form as a browser would (CSRF cookie and token); return the status."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"{server.http_url}/accounts/login/"
    page = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token}
    ).encode()
    request = urllib.request.Request(login, data=form, headers={"Referer": login})
    try:
        return opener.open(request, timeout=10).status
    except urllib.error.HTTPError as refused:
        return refused.code


async def test_failures_on_one_process_lock_the_account_on_the_other():
    with (
        postgres_env(require_postgres(), AXES_FAILURE_LIMIT="3") as env,
        Daphne(env) as first,
        Daphne(env) as second,
    ):
        username = f"axes{uuid.uuid4().hex[:6]}"
        manage(env, "ensure_demo_user", "--username", username, "--password", PASSWORD)
        assert sign_in(second, username, PASSWORD) == 200  # followed the redirect to the page
        for _ in range(3):
            assert sign_in(first, username, "wrong") in (200, 429)
        assert sign_in(second, username, PASSWORD) == 429
