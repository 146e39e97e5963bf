"""Where daphne's time goes under the firehose: py-spy samples, summed by thread and function.

Usage: python bench/profile_delivery.py [--rate 2000] [--users 100] [--tabs 1] [--seconds 5]
                                       [--redis redis://127.0.0.1:6379/0]
                                       [--postgres postgres://postgres@127.0.0.1:5432/test]
Starts our daphne (SQLite or PostgreSQL, the in-memory layer or Redis), drives it as
bench/delivery.py does, samples it with py-spy at 250 Hz, and prints the share of samples per
thread and the functions with the most samples (on their own, and with what
they call). Idle time shows as the event loop's select(); samples of threads
waiting for the GIL count where they wait.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.delivery import Result, ours, row
from bench.users import FIREHOSE, issue_tokens
from tests.daphne import Daphne, postgres_env, sqlite_env


def summarise(raw: Path, top: int) -> None:
    """Print shares of samples by thread, by function alone, and by function with callees."""
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[
            "writer/database threads" if "Thread._bootstrap" in frames[0] else "event loop"
        ] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            within[frame] += n
    print(f"{total} samples")
    for name, counter in (
        ("by thread", threads),
        ("by function alone", own),
        ("by function with callees", within),
    ):
        print(f"-- {name}")
        for frame, n in counter.most_common(top):
            print(f"{n / total * 100:5.1f}%  {frame}")


def main() -> None:
    """Run, sample and summarise."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=2000, help="deliveries per second")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--redis", default="", help="a Redis URL: profile the Redis layer")
    parser.add_argument(
        "--postgres", default="", help="a PostgreSQL URL: a fresh database there, not SQLite"
    )
    args = parser.parse_args()
    layer = {"REDIS_URL": args.redis, "CHANNEL_LAYER_PREFIX": "profile"} if args.redis else {}
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    database = (
        postgres_env(args.postgres, WS_START_RATE_BURST="1000", **layer)
        if args.postgres
        else sqlite_env(WS_START_RATE_BURST="1000", **layer)
    )
    with tempfile.TemporaryDirectory() as tmp, database as env:
        raw = Path(tmp) / "samples.txt"
        with Daphne(env) as server:
            assert server.proc is not None
            tokens = issue_tokens(env, args.users, setup=FIREHOSE)
            sampler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(server.proc.pid),
                    "-d",
                    str(int(args.seconds) + 2),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            per_user = max(1, round(args.rate / args.tabs / args.users))
            expected = per_user * int(args.seconds) * args.users * args.tabs
            label = "ours, Redis" if args.redis else "ours, in-memory"
            result = Result(label, args.users, args.tabs, "profiled", args.rate, expected)
            ours(server.ws_url, tokens, result, args.seconds, args.client_processes)
            row(result)
            sampler.wait()
        summarise(raw, args.top)


if __name__ == "__main__":
    main()
