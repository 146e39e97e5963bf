"""Test settings: the project's settings plus tools only tests register."""

import atexit
import os
import shutil
import tempfile

from chatplatform.settings import *  # noqa: F403
from chatplatform.settings import AGENT_TOOLS, DATABASES

# A file database (not :memory:), so the threads Channels runs ORM calls in share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"chatplatform-test-{os.getpid()}.sqlite3")
    }

AGENT_TOOLS = {
    **AGENT_TOOLS,
    "slow": "tests.tools.SlowTool",
    "broken": "tests.tools.BrokenTool",
    "refusing": "tests.tools.RefusingTool",
    "echo": "tests.tools.EchoTool",
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Channels runs ORM calls in worker threads; persistent connections there would
# outlive the test database and block its teardown on PostgreSQL.
DATABASES["default"]["CONN_MAX_AGE"] = 0

# Tests start the process lifecycle themselves where they test it.
PROCESS_LIFECYCLE_AUTOSTART = False

# Tests read static files from the app folders (no collectstatic).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = tempfile.mkdtemp(prefix="chatplatform-static-")
atexit.register(shutil.rmtree, STATIC_ROOT, True)  # one per test session: removed at exit
LOG_FORMAT = "plain"
LOGGING["handlers"]["console"]["formatter"] = "plain"  # noqa: F405
