"""A model-based test of the wire protocol against real daphne processes.

A seeded random driver opens, uses, closes and cuts tabs of two users, sending
every kind of client request (good and refused starts, stops, resumes, pings,
garbage, oversize frames, and `resolve_input` with every decision, valid or not,
for its own pending, already decided, foreign and unknown requests) while
stepper runs produce events, some of them asking for approvals or answers. Each tab records
every frame it receives. When everything has settled, `check` holds the
recordings against the database and the protocol's promises:

- every socket that stayed open received every event of its user stored after
  its `connection_established`, exactly once and in seq order (with the
  replays its own resumes asked for); a socket that closed received a gapless
  prefix of them;
- no socket received anything of the other user (each event equals the stored
  one of its own user at that seq);
- every run has `agent_started` first and exactly one terminal event last;
- every `input_requested` is followed by exactly one `input_resolved` of the same
  run before its end, with nothing else of that run in between; an interrupt is
  accepted at most once, and an accepted one is resolved `by: user`;
- every request got exactly one reply, of an allowed kind;
- the server closed no good socket, and logged no ERROR.

A failure names its seed, so `--seed N` (or PROTOCOL_MODEL_SEEDS) replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets

from tests.daphne import Daphne, manage, shared_services, sqlite_env, stored_events

TERMINAL = {"agent_completed", "agent_error", "agent_cancelled"}
# Limits low enough that refusals of every kind happen during a trial.
MODEL_LIMITS = {
    "WS_START_RATE_PER_SECOND": "8",
    "WS_START_RATE_BURST": "6",
    "AGENT_MAX_CONCURRENT_RUNS": "3",
    "WS_MAX_FRAME_BYTES": "16384",
    "WS_MAX_MESSAGE_CHARS": "2000",
    "WS_MAX_CONNECTIONS_PER_USER": "20",
    # Unanswered input requests expire soon, so runs nobody answers still end.
    "AGENT_INPUT_TIMEOUT_SECONDS": "2",
}
FRAME_LIMIT = int(MODEL_LIMITS["WS_MAX_FRAME_BYTES"])
MESSAGE_LIMIT = int(MODEL_LIMITS["WS_MAX_MESSAGE_CHARS"])
CLOSE_TOO_LARGE = 4009
START_REFUSALS = {"too_many_runs", "rate_limited"}
ANSWER_SCHEMA = {"type": "string", "maxLength": 5}


class ModelViolation(AssertionError):
    """An invariant of the protocol did not hold."""


@dataclass
class Expect:
    """What one request may get back: reply types and error codes; optional if none may come."""

    request_id: str | None
    what: str
    types: frozenset[str]
    codes: frozenset[str] = frozenset()
    optional: bool = False


@dataclass
class Tab:
    """One socket of one user, recording every frame it receives."""

    name: str
    username: str
    server: Daphne
    ws: Any = None
    # ("recv", frame) for each frame received, ("resume", (request_id, cursor)) when
    # a resume is sent: one timeline, so a replay can be told from what came before.
    timeline: list[tuple[str, Any]] = field(default_factory=list)
    expects: list[Expect] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    ended_by: str | None = None  # "close", "cut", "oversize": who ended it and how
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open(self) -> bool:
        """Tell whether the socket is still in use."""
        return self.ended_by is None and not self.closed.is_set()

    async def connect(self, token: str) -> None:
        """Open the socket and start recording."""
        self.ws = await websockets.connect(
            self.server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            max_size=2**24,
            max_queue=None,
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.timeline.append(("recv", json.loads(text)))
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            self.closed.set()

    async def send(self, text: str, expect: Expect | None) -> None:
        """Send a frame; note what it should get back."""
        if expect is not None:
            self.expects.append(expect)
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(text)

    @property
    def frames(self) -> list[dict[str, Any]]:
        """Return every frame received, in order."""
        return [item for what, item in self.timeline if what == "recv"]

    def events(self) -> list[dict[str, Any]]:
        """Return the agent events received, in order."""
        return [f for f in self.frames if "seq" in f]

    def replies(self) -> list[dict[str, Any]]:
        """Return every frame that answers a request, in order."""
        return [f for f in self.frames if "seq" not in f and f["type"] != "connection_established"]


@dataclass
class User:
    """One of the two users, with what the driver learned of its runs and threads."""

    username: str
    token: str
    tabs: list[Tab] = field(default_factory=list)

    def run_ids(self) -> list[str]:
        """Return the ids of runs this user's tabs saw accepted."""
        return [f["run_id"] for t in self.tabs for f in t.frames if f["type"] == "run_accepted"]

    def inputs(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Return the input requests this user's tabs saw (id -> data), and those seen resolved."""
        requested: dict[str, dict[str, Any]] = {}
        resolved: set[str] = set()
        for tab in self.tabs:
            for event in tab.events():
                if event["type"] == "input_requested":
                    requested[event["data"]["interrupt_id"]] = event["data"]
                elif event["type"] == "input_resolved":
                    resolved.add(event["data"]["interrupt_id"])
        return requested, resolved

    def thread_ids(self) -> list[str]:
        """Return the ids of threads this user's tabs saw."""
        return [f["thread_id"] for t in self.tabs for f in t.frames if f["type"] == "run_accepted"]


@dataclass
class Trial:
    """What one seed did and checked."""

    seed: int
    operations: Counter[str] = field(default_factory=Counter)
    events_checked: int = 0
    frames_checked: int = 0
    runs: int = 0
    inputs: Counter[str] = field(default_factory=Counter)  # input requests by outcome

    def summary(self) -> str:
        """Describe the trial in one line."""
        return (
            f"seed {self.seed}: {sum(self.operations.values())} operations, "
            f"{self.runs} runs, {sum(self.inputs.values())} input requests "
            f"({', '.join(f'{k} {n}' for k, n in sorted(self.inputs.items()))}), "
            f"{self.events_checked} events stored, "
            f"{self.frames_checked} frames checked"
        )


class Driver:
    """Drives random requests over the tabs of two users spread over the given servers."""

    def __init__(
        self, seed: int, env: dict[str, str], servers: Sequence[Daphne], operations: int
    ) -> None:
        self.rng = random.Random(seed)
        self.env = env
        self.servers = list(servers)
        self.budget = operations
        self.trial = Trial(seed)
        self.users: list[User] = []
        self.rid = 0
        self.unsettled: list[str] = []

    def _request_id(self) -> str:
        self.rid += 1
        return f"r{self.rid}"

    async def run(self) -> Trial:
        """Run the trial, settle, check every invariant; raise ModelViolation on a break."""
        for _ in range(2):
            username = f"model{uuid.uuid4().hex[:8]}"
            token = manage(self.env, "issue_token", username, "--create-user")
            self.users.append(User(username, token))
        try:
            for user in self.users:
                for _ in range(2):
                    await self._open_tab(user)
            for _ in range(self.budget):
                await self._step()
                await asyncio.sleep(self.rng.choice([0, 0, 0.002, 0.01, 0.03]))
            await self._settle()
            self._check()
        finally:
            for user in self.users:
                for tab in user.tabs:
                    if tab.ws is not None and not tab.closed.is_set():
                        await tab.ws.close()
                    if tab.reader is not None:
                        await asyncio.wait({tab.reader}, timeout=5)
        return self.trial

    # -- requests --------------------------------------------------------------

    async def _step(self) -> None:
        user = self.rng.choice(self.users)
        open_tabs = [t for t in user.tabs if t.open]
        if not open_tabs or (len(open_tabs) < 4 and self.rng.random() < 0.06):
            await self._open_tab(user)
            return
        tab = self.rng.choice(open_tabs)
        kinds = [
            ("start", 14),
            ("user_message", 3),
            ("refused_start", 7),
            ("stop_own", 5),
            ("stop_unknown", 2),
            ("stop_foreign", 2),
            ("resume", 5),
            ("resolve", 12),
            ("ping", 3),
            ("garbage", 4),
            ("oversize", 1),
            ("close", 2),
            ("cut", 2),
        ]
        kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        self.trial.operations[kind] += 1
        await getattr(self, f"_op_{kind}")(user, tab)

    async def _open_tab(self, user: User) -> None:
        self.trial.operations["open"] += 1
        server = self.rng.choice(self.servers)
        tab = Tab(name=f"{user.username}/{len(user.tabs)}", username=user.username, server=server)
        await tab.connect(user.token)
        user.tabs.append(tab)

    def _other(self, user: User) -> User:
        return self.users[1] if user is self.users[0] else self.users[0]

    def _stepper_payload(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "steps": self.rng.randint(1, 6),
            "delay_ms": self.rng.choice([5, 20, 40]),
        }
        roll = self.rng.random()
        if roll < 0.2:
            options.update(steps=self.rng.randint(1, 2), approve_tools=True)
        elif roll < 0.35:
            options["ask"] = f"question {self.rng.randrange(1000)}?"
            if self.rng.random() < 0.5:
                options["ask_schema"] = ANSWER_SCHEMA
        return {"agent": "stepper", "message": f"go {self.rng.randrange(1000)}", "options": options}

    async def _send_json(self, tab: Tab, frame: dict[str, Any], expect: Expect | None) -> None:
        await tab.send(json.dumps(frame), expect)

    async def _op_start(self, user: User, tab: Tab) -> None:
        payload = self._stepper_payload()
        threads = user.thread_ids()
        if threads and self.rng.random() < 0.5:
            payload["thread_id"] = self.rng.choice(threads)
            payload["on_busy"] = self.rng.choice(["enqueue", "interrupt", "reject", None])
            if payload["on_busy"] is None:
                del payload["on_busy"]
        rid = self._request_id()
        codes = set(START_REFUSALS)
        if payload.get("on_busy") == "reject":
            codes.add("thread_busy")
        await self._send_json(
            tab,
            {"type": "start_agent", "request_id": rid, "payload": payload},
            Expect(rid, "start", frozenset({"run_accepted", "error"}), frozenset(codes)),
        )

    async def _op_user_message(self, user: User, tab: Tab) -> None:
        # The default agent is triage: a short run of its own.
        rid = self._request_id()
        payload: dict[str, Any] = {"text": self.rng.choice(["calculate 6*7", "what time is it"])}
        threads = user.thread_ids()
        if threads and self.rng.random() < 0.5:
            payload["thread_id"] = self.rng.choice(threads)
        await self._send_json(
            tab,
            {"type": "user_message", "request_id": rid, "payload": payload},
            Expect(rid, "start", frozenset({"run_accepted", "error"}), frozenset(START_REFUSALS)),
        )

    async def _op_refused_start(self, user: User, tab: Tab) -> None:
        payload = self._stepper_payload()
        foreign = self._other(user).thread_ids()
        cases: list[tuple[str, str, frozenset[str]]] = [
            ("agent", f"no-such-agent-{self.rng.randrange(99)}", frozenset({"unknown_agent"})),
            ("thread_id", "not-a-uuid", frozenset({"invalid_message"})),
            ("message", "x" * (MESSAGE_LIMIT + 1), frozenset({"message_too_large"})),
            ("options", {"steps": 1000}, frozenset({"invalid_message"})),
            ("on_busy", "sometimes", frozenset({"invalid_message"})),
            (
                "thread_id",
                str(uuid.uuid4()),
                frozenset({"not_found"}) | START_REFUSALS,
            ),
        ]
        if foreign:
            cases.append(
                ("thread_id", self.rng.choice(foreign), frozenset({"not_found"}) | START_REFUSALS)
            )
        key, value, codes = self.rng.choice(cases)
        payload[key] = value
        rid = self._request_id()
        await self._send_json(
            tab,
            {"type": "start_agent", "request_id": rid, "payload": payload},
            Expect(rid, f"refused start ({key})", frozenset({"error"}), codes),
        )

    async def _op_stop_own(self, user: User, tab: Tab) -> None:
        runs = user.run_ids()
        if not runs:
            await self._op_ping(user, tab)
            return
        rid = self._request_id()
        # A run that already ended is not_found; a going one answers with its cancel.
        await self._send_json(
            tab,
            {"type": "stop_agent", "request_id": rid, "payload": {"run_id": self.rng.choice(runs)}},
            Expect(rid, "stop", frozenset({"error"}), frozenset({"not_found"}), optional=True),
        )

    async def _op_stop_unknown(self, user: User, tab: Tab) -> None:
        rid = self._request_id()
        await self._send_json(
            tab,
            {"type": "stop_agent", "request_id": rid, "payload": {"run_id": str(uuid.uuid4())}},
            Expect(rid, "stop unknown", frozenset({"error"}), frozenset({"not_found"})),
        )

    async def _op_stop_foreign(self, user: User, tab: Tab) -> None:
        runs = self._other(user).run_ids()
        if not runs:
            await self._op_stop_unknown(user, tab)
            return
        rid = self._request_id()
        await self._send_json(
            tab,
            {"type": "stop_agent", "request_id": rid, "payload": {"run_id": self.rng.choice(runs)}},
            Expect(rid, "stop foreign", frozenset({"error"}), frozenset({"not_found"})),
        )

    async def _op_resume(self, user: User, tab: Tab) -> None:
        seen = max((f["seq"] for f in tab.events()), default=0)
        cursor = self.rng.choice([0, seen, max(0, seen - self.rng.randint(1, 20)), seen + 50])
        rid = self._request_id()
        tab.timeline.append(("resume", (rid, cursor)))
        await self._send_json(
            tab,
            {"type": "resume", "request_id": rid, "payload": {"after_seq": cursor}},
            Expect(rid, f"resume {cursor}", frozenset({"resume_complete"})),
        )

    async def _op_resolve(self, user: User, tab: Tab) -> None:
        requested, resolved = user.inputs()
        pending = [i for i in requested if i not in resolved]
        foreign, _ = self._other(user).inputs()
        roll = self.rng.random()
        rid = self._request_id()
        if (pending and roll < 0.75) or (requested and roll < 0.85):
            interrupt_id = self.rng.choice(pending if pending and roll < 0.75 else list(requested))
            decision, extra, valid = self._decision(requested[interrupt_id])
            # Another tab, the timeout or a cancel may have decided it meanwhile.
            codes = {"already_resolved"} | (set() if valid else {"invalid_message"})
            expect = Expect(
                rid,
                f"resolve {decision} ({'valid' if valid else 'invalid'})",
                frozenset({"error", "input_accepted"} if valid else {"error"}),
                frozenset(codes),
            )
        else:
            known = list(foreign) if foreign and roll < 0.93 else []
            interrupt_id = self.rng.choice(known) if known else f"in_{uuid.uuid4().hex}"
            decision, extra = "approve", {}
            expect = Expect(rid, "resolve foreign", frozenset({"error"}), frozenset({"not_found"}))
        payload = {"interrupt_id": interrupt_id, "decision": decision, **extra}
        await self._send_json(
            tab, {"type": "resolve_input", "request_id": rid, "payload": payload}, expect
        )

    def _decision(self, asked: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        """Pick a decision for a request: (decision, its fields, whether it fits the request)."""
        if asked["kind"] == "tool_approval":
            choices: list[tuple[str, dict[str, Any], bool]] = [
                ("approve", {}, True),
                ("reject", {"message": "no"}, True),
                ("edit", {"parameters": {"expression": "2+3"}}, True),
                ("edit", {"parameters": {"expression": 7}}, False),
                ("edit", {"parameters": {"expression": "2**"}}, False),
                ("answer", {"answer": "yes"}, False),
            ]
        else:
            schema = asked.get("response_schema")
            choices = [
                ("answer", {"answer": "yes"}, True),
                ("answer", {"answer": "far too long" if schema else ""}, False),
                ("reject", {}, True),
                ("approve", {}, False),
            ]
        return self.rng.choice(choices)

    async def _op_ping(self, user: User, tab: Tab) -> None:
        rid = self._request_id()
        await self._send_json(
            tab, {"type": "ping", "request_id": rid}, Expect(rid, "ping", frozenset({"pong"}))
        )

    async def _op_garbage(self, user: User, tab: Tab) -> None:
        text, code = self.rng.choice(
            [
                ("{not json", "invalid_json"),
                ("[1, 2]", "invalid_message"),
                ('{"type": "launch_missiles"}', "unknown_type"),
                ('{"type": "stop_agent", "payload": {}}', "invalid_message"),
                ('{"type": "resume", "payload": {"after_seq": -3}}', "invalid_message"),
                ('{"type": 7}', "invalid_message"),
            ]
        )
        await tab.send(
            text, Expect(None, f"garbage {text}", frozenset({"error"}), frozenset({code}))
        )

    async def _op_oversize(self, user: User, tab: Tab) -> None:
        tab.ended_by = "oversize"
        text = json.dumps({"type": "ping", "pad": "x" * FRAME_LIMIT})
        await tab.send(
            text, Expect(None, "oversize", frozenset({"error"}), frozenset({"message_too_large"}))
        )
        await asyncio.wait_for(tab.closed.wait(), 10)

    async def _op_close(self, user: User, tab: Tab) -> None:
        tab.ended_by = "close"
        await tab.ws.close()

    async def _op_cut(self, user: User, tab: Tab) -> None:
        tab.ended_by = "cut"
        tab.ws.transport.abort()

    # -- settling and checking -------------------------------------------------

    async def _settle(self, timeout: float = 40) -> None:
        """Wait until every run has ended and every open tab has everything stored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stored = {u.username: stored_events(self.env, u.username) for u in self.users}
            if all(self._runs_ended(stored[u.username], u.run_ids()) for u in self.users) and all(
                self._caught_up(tab, stored[user.username])
                for user in self.users
                for tab in user.tabs
                if tab.open
            ):
                break
            await asyncio.sleep(0.2)
        else:
            self.unsettled = [
                f"{tab.name} at {max((f['seq'] for f in tab.events()), default=0)}"
                f" of {stored[user.username][-1][0] if stored[user.username] else 0}"
                for user in self.users
                for tab in user.tabs
                if tab.open and not self._caught_up(tab, stored[user.username])
            ] + [
                f"{u.username} runs ended: {self._runs_ended(stored[u.username], u.run_ids())}"
                for u in self.users
            ]
        # Every open tab answers a last ping: all its requests are answered by then.
        for user in self.users:
            for tab in user.tabs:
                if tab.open:
                    await self._op_ping(user, tab)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            tab.open and (not tab.frames or tab.frames[-1].get("type") != "pong")
            for user in self.users
            for tab in user.tabs
        ):
            await asyncio.sleep(0.05)

    @staticmethod
    def _runs_ended(rows: list[tuple[int, str, str, dict[str, Any]]], accepted: list[str]) -> bool:
        # Every run started, and every run accepted: a run queued behind one in its
        # thread in another process starts only once its poll sees that one end.
        started = {run for _, kind, run, _ in rows if kind == "agent_started"}
        ended = {run for _, kind, run, _ in rows if kind in TERMINAL}
        return started | set(accepted) <= ended

    @staticmethod
    def _caught_up(tab: Tab, rows: list[tuple[int, str, str, dict[str, Any]]]) -> bool:
        last = rows[-1][0] if rows else 0
        start = tab.frames[0]["last_seq"] if tab.frames else 0
        return max((f["seq"] for f in tab.events()), default=start) >= last

    def _check(self) -> None:
        broken: list[str] = []
        for user in self.users:
            rows = stored_events(self.env, user.username)
            self.trial.events_checked += len(rows)
            by_seq = {seq: (kind, run, data) for seq, kind, run, data in rows}
            last = rows[-1][0] if rows else 0
            try:
                self._check_runs(user, rows)
            except ModelViolation as exc:
                broken.append(str(exc))
            for tab in user.tabs:
                self.trial.frames_checked += len(tab.frames)
                try:
                    self._check_tab(tab, by_seq, last)
                except ModelViolation as exc:
                    broken.append(str(exc))
        for server in self.servers:
            bad = server.error_lines()
            if bad:
                broken.append("the server logged errors:\n" + "\n".join(bad[:10]))
        if self.unsettled:
            broken.append(f"the trial did not settle: {self.unsettled}")
        if broken:
            raise ModelViolation(f"{len(broken)} invariants broke:\n- " + "\n- ".join(broken))

    def _check_runs(self, user: User, rows: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        per_run: dict[str, list[str]] = {}
        for _, kind, run, _ in rows:
            per_run.setdefault(run, []).append(kind)
        self.trial.runs += len(per_run)
        for run, kinds in per_run.items():
            if kinds[0] != "agent_started" or kinds[-1] not in TERMINAL:
                raise ModelViolation(f"run {run} of {user.username} is not whole: {kinds}")
            if sum(kind in TERMINAL for kind in kinds) != 1:
                raise ModelViolation(f"run {run} has several terminal events: {kinds}")
        self._check_inputs(user, rows)
        accepted = set(user.run_ids())
        if not accepted <= set(per_run):
            raise ModelViolation(f"accepted runs without events: {accepted - set(per_run)}")

    def _check_inputs(self, user: User, rows: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        """Every input request is resolved once, in its run, before its end; one answer wins."""
        open_in: dict[str, str] = {}  # interrupt id -> run, while pending
        resolved: dict[str, dict[str, Any]] = {}
        for seq, kind, run, data in rows:
            if kind == "input_requested":
                if data["interrupt_id"] in open_in or data["interrupt_id"] in resolved:
                    raise ModelViolation(f"seq {seq}: {data['interrupt_id']} requested twice")
                if any(r == run for r in open_in.values()):
                    raise ModelViolation(f"seq {seq}: run {run} asked twice at once")
                open_in[data["interrupt_id"]] = run
            elif kind == "input_resolved":
                if open_in.pop(data["interrupt_id"], None) != run:
                    raise ModelViolation(f"seq {seq}: {data} resolves nothing pending in {run}")
                resolved[data["interrupt_id"]] = data
            elif kind in TERMINAL and run in open_in.values():
                raise ModelViolation(f"seq {seq}: run {run} ended with an input pending")
            elif run in open_in.values() and kind not in ("input_resolved",):
                raise ModelViolation(f"seq {seq}: run {run} emitted {kind} while waiting")
        self.trial.inputs.update(data["outcome"] for data in resolved.values())
        accepted = Counter(
            f["interrupt_id"] for t in user.tabs for f in t.frames if f["type"] == "input_accepted"
        )
        for interrupt_id, count in accepted.items():
            if count > 1:
                raise ModelViolation(f"{interrupt_id} was accepted {count} times")
            if resolved.get(interrupt_id, {}).get("by") != "user":
                raise ModelViolation(
                    f"{interrupt_id} accepted, resolved {resolved.get(interrupt_id)}"
                )

    def _check_tab(self, tab: Tab, by_seq: dict[int, tuple[str, str, Any]], last: int) -> None:
        where = f"tab {tab.name} ({tab.ended_by or 'open'})"
        if not tab.frames or tab.frames[0]["type"] != "connection_established":
            raise ModelViolation(f"{where}: first frame was not connection_established")
        for frame in tab.events():
            stored = by_seq.get(frame["seq"])
            got = (frame["type"], frame["run_id"], frame["data"])
            if stored != got:
                raise ModelViolation(
                    f"{where}: seq {frame['seq']} is not its user's stored event: {got} != {stored}"
                )
        self._check_replies(tab, where)
        self._check_stream(tab, where, last)
        if tab.ended_by is None and tab.closed.is_set():
            raise ModelViolation(f"{where}: the server closed a good socket ({tab.close_code})")
        if tab.ended_by == "oversize" and tab.close_code != CLOSE_TOO_LARGE:
            raise ModelViolation(f"{where}: oversize frame closed with {tab.close_code}")

    def _check_replies(self, tab: Tab, where: str) -> None:
        replies = tab.replies()
        position = 0
        for expect in tab.expects:
            reply = replies[position] if position < len(replies) else None
            if reply is None or reply.get("request_id") != expect.request_id:
                if expect.optional:
                    continue
                if reply is None and tab.ended_by is not None:
                    return  # the tab ended before this request was answered
                raise ModelViolation(f"{where}: no reply to {expect.what}; got {reply}")
            position += 1
            code = reply.get("error", {}).get("code")
            if reply["type"] not in expect.types or (code is not None and code not in expect.codes):
                raise ModelViolation(f"{where}: {expect.what} got {reply}")
        if position != len(replies):
            raise ModelViolation(f"{where}: replies nobody asked for: {replies[position:]}")

    def _check_stream(self, tab: Tab, where: str, last: int) -> None:
        """Follow the tab's timeline with every state a correct server could be in.

        A state is (next live seq, cursors of resumes sent and not yet complete,
        next replayed seq once the server has taken the first of them). Until the
        server takes a resume, live events go on; from then until its
        resume_complete only its replay comes (live ones are held meanwhile).
        """
        hello = tab.frames[0]
        states: set[State] = {(hello["last_seq"] + 1, (), None)}
        cursors: dict[str | None, int] = {}
        # A resume sent right after connecting can be noted before the hello is read.
        timeline = [entry for entry in tab.timeline if entry[1] is not hello]
        for what, item in timeline:
            if what == "resume":
                request_id, cursor = item
                cursors[request_id] = cursor
                states = {(n, (*p, cursor), r) for n, p, r in states}
                continue
            if "seq" in item:
                states = {s for state in states for s in _on_event(state, item["seq"])}
                if not states:
                    raise ModelViolation(
                        f"{where}: seq {item['seq']} breaks the gapless stream "
                        f"(after {_recent(tab, item)})"
                    )
            elif item["type"] == "resume_complete":
                cursor = cursors[item.get("request_id")]
                states = {
                    s
                    for state in states
                    for s in _on_resume_complete(state, cursor, item["last_seq"])
                }
                if not states:
                    raise ModelViolation(f"{where}: {item} does not close its replay")
        if tab.ended_by is None and not any(n == last + 1 and not p for n, p, _ in states):
            raise ModelViolation(
                f"{where}: stayed open but did not receive everything through seq {last} "
                f"(after {_recent(tab, None)}; possible states {sorted(states)[:4]})"
            )


def _recent(tab: Tab, frame: dict[str, Any] | None) -> list[Any]:
    frames = tab.frames
    index = len(frames) if frame is None else frames.index(frame)
    return [f.get("seq", f["type"]) for f in frames[max(0, index - 8) : index]]


# (next live seq, cursors of the resumes not yet complete, next replayed seq)
State = tuple[int, tuple[int, ...], int | None]


def _on_event(state: State, seq: int) -> list[State]:
    next_live, pending, replay = state
    if replay is not None:
        # The server has taken the first resume: only its replay until it completes.
        return [(next_live, pending, replay + 1)] if seq == replay else []
    out: list[State] = []
    if seq == next_live:
        out.append((next_live + 1, pending, None))
    if pending and seq == pending[0] + 1:
        out.append((next_live, pending, seq + 1))
    return out


def _on_resume_complete(state: State, cursor: int, last_seq: int) -> list[State]:
    next_live, pending, replay = state
    if not pending or pending[0] != cursor:
        return []
    # Everything after the cursor through last_seq was replayed; a cursor at or past
    # the user's last event replays nothing and reports that last event.
    whole = replay - 1 == last_seq if replay is not None else last_seq <= cursor
    return [(max(next_live, last_seq + 1), pending[1:], None)] if whole else []


@contextlib.contextmanager
def layout(
    name: str, redis_url: str = "", postgres_url: str = ""
) -> Iterator[tuple[dict[str, str], list[Daphne]]]:
    """Start the servers of a layout (memory, redis, two-processes); yield env and servers."""
    prefix = f"model{uuid.uuid4().hex[:8]}"
    if name == "memory":
        with sqlite_env(**MODEL_LIMITS) as env, Daphne(env) as server:
            yield env, [server]
    elif name == "redis":
        with (
            sqlite_env(REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, **MODEL_LIMITS) as env,
            Daphne(env) as server,
        ):
            yield env, [server]
    else:
        with shared_services(postgres_url, redis_url, **MODEL_LIMITS) as (env, servers):
            yield env, servers
