"""ASGI entry point: `daphne chatplatform.asgi:application`."""

import asyncio
import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")

# Django must be set up before anything imports models.
get_asgi_application()

from django.conf import settings  # noqa: E402

from chatplatform.process import build_application, build_process  # noqa: E402
from realtime import autobahn_logging, backpressure, inputqueue, textframes, writesoon  # noqa: E402

process = build_process()
application = build_application(process)

# The event writer's thread and the event loop share the GIL; Python's default
# 5 ms switch interval makes the loop wait that long behind a batch being
# written. A shorter interval keeps emit-to-socket latency low (bench/RESULTS.md).
sys.setswitchinterval(settings.GIL_SWITCH_INTERVAL_SECONDS)

# What starting made (Django, the apps, this process's parts) lives as long as
# the process. Frozen, the collector leaves it alone: a full collection scans
# only what was made since, instead of pausing the event loop for tens of
# milliseconds (bench/RESULTS.md).
if settings.GC_FREEZE_AT_START:
    gc.collect()
    gc.freeze()

# Under daphne, bound what a client that stops reading can make us buffer, stop
# autobahn formatting debug lines it does not log, queue each socket's messages
# in a lighter queue than asyncio's (3 kB less per idle socket), write plain
# text frames without autobahn's per-frame checks, and send what a socket is
# given on the next loop turn without two epoll_ctl calls a frame.
if "daphne.server" in sys.modules:
    backpressure.install(settings.WS_MAX_OUTBOUND_BYTES)
    autobahn_logging.install()
    inputqueue.install()
    textframes.install()
    writesoon.install()

# Under daphne (Twisted, no ASGI lifespan), start as soon as the reactor runs, so
# orphaned runs are ended and the heartbeat beats before the first request.
if settings.PROCESS_LIFECYCLE_AUTOSTART and "twisted.internet.reactor" in sys.modules:
    from twisted.internet import reactor

    reactor.callWhenRunning(lambda: asyncio.ensure_future(process.lifecycle.start()))  # type: ignore[attr-defined]
