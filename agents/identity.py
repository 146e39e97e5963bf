"""The name of the server process among the others (host, pid and a random suffix)."""

import os
import re
import secrets
import socket

HOST = socket.gethostname()
# This process's name: also a valid channel-layer group suffix (letters, digits, - _ .).
PROCESS_NAME = re.sub(
    r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
)
