"""nginx with the shipped config (docs/deploy/nginx-chatplatform.conf), for tests and benches."""

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.daphne import ROOT
from tests.services import missing_service

SHIPPED = ROOT / "docs" / "deploy" / "nginx-chatplatform.conf"


def require_nginx() -> str:
    """Return the nginx binary, or skip (fail under REQUIRE_SERVICES) without one."""
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
    """Wait until nginx listens on `port`."""
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
