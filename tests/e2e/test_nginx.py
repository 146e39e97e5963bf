"""nginx with the shipped config in front of two daphne processes, TLS ended at nginx."""

import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.daphne import ROOT, Daphne, manage, postgres_env
from tests.services import free_port, missing_service, require_postgres, require_redis
from tests.wsclient import AgentClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]

SHIPPED = ROOT / "docs" / "deploy" / "nginx-chatplatform.conf"


def require_nginx() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        missing_service("nginx (apt-get install nginx-light)", "PATH")
    return str(binary)


def site_config(tmp: Path, upstreams: list[int], http_port: int, https_port: int) -> Path:
    """The shipped config with this test's ports and a self-signed certificate."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(tmp / "key.pem"),
            "-out",
            str(tmp / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    text = SHIPPED.read_text()
    servers = iter(upstreams)
    text = re.sub(r"server 127\.0\.0\.1:800\d", lambda _: f"server 127.0.0.1:{next(servers)}", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    text = text.replace("/etc/ssl/chatplatform/fullchain.pem", str(tmp / "cert.pem"))
    text = text.replace("/etc/ssl/chatplatform/privkey.pem", str(tmp / "key.pem"))
    text = text.replace(
        "return 301 https://$host$request_uri;",
        f"return 301 https://$host:{https_port}$request_uri;",
    )
    site = tmp / "chatplatform.conf"
    site.write_text(text)
    main = tmp / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log {tmp}/access.log;\n  client_body_temp_path {tmp}/body;\n"
        f"  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n"
        f"  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  include {site};\n}}\n"
    )
    return main


def wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not listen")


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
