"""nginx with the shipped config in front of two daphne processes, TLS ended at nginx."""

import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.daphne import Daphne, manage, postgres_env
from tests.nginx import require_nginx, site_config, wait_port
from tests.services import free_port, require_postgres, require_redis
from tests.wsclient import AgentClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]


async def test_run_through_nginx_with_tls_in_front_of_two_daphnes():
    nginx = require_nginx()
    redis_url, pg_url = require_redis(), require_postgres()
    prefix = f"ngx{uuid.uuid4().hex[:8]}"
    with postgres_env(
        pg_url, REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, USE_X_FORWARDED_PROTO="1"
    ) as env:
        with Daphne(env) as a, Daphne(env) as b, tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            http_port, https_port = free_port(), free_port()
            config = site_config(tmp, [a.port, b.port], http_port, https_port)
            check = subprocess.run(
                [nginx, "-t", "-p", str(tmp), "-c", str(config)], capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr
            proc = subprocess.Popen(
                [nginx, "-p", str(tmp), "-c", str(config)], stderr=subprocess.DEVNULL
            )
            try:
                wait_port(https_port, proc, tmp / "error.log")
                tls = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
                token = manage(env, "issue_token", f"n{uuid.uuid4().hex[:8]}", "--create-user")
                url = f"wss://127.0.0.1:{https_port}/ws/agents/"
                tabs = [AgentClient(url, token, ssl=tls) for _ in range(4)]
                for tab in tabs:
                    await tab.connect()
                run = await tabs[0].start("calculate 6*7")
                for tab in tabs:
                    await tab.until_terminal({run["run_id"]})
                assert all(tab.events == tabs[0].events for tab in tabs)
                assert tabs[0].events[-1]["data"]["result"] == "6*7 = 42"
                for tab in tabs:
                    await tab.close()
                # both daphnes served sockets (nginx balanced them)
                assert "socket connected" in a.output() and "socket connected" in b.output()
                # metrics are not exposed through the proxy; health is, over plain HTTP too
                with pytest.raises(urllib.error.HTTPError) as denied:
                    urllib.request.urlopen(
                        f"https://127.0.0.1:{https_port}/metrics", context=tls, timeout=10
                    )
                assert denied.value.code == 403
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http_port}/healthz", timeout=10
                ) as ok:
                    assert ok.status == 200
            finally:
                proc.terminate()
                proc.wait(timeout=10)
