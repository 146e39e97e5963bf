"""The JSON text of frames and payloads: orjson's, parsed as json.dumps's was, valid JSON always."""

import dataclasses
import datetime as dt
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.events.frames import compact_json
from agents.models import RunEvent
from tests.agents.events.test_emitter import make_run
from tests.conftest import connect_user


def json_dumps(value):
    """What the frames were encoded with before orjson."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def strict_loads(text):
    """Parse JSON as a browser's JSON.parse does: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text()
)
exact_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(exact_values)
def test_the_text_is_json_dumps_text_for_strings_integers_and_containers(value):
    assert compact_json(value) == json_dumps(value)


any_values = st.recursive(
    scalars
    | st.integers()  # over 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(any_values)
def test_any_json_value_parses_as_json_dumps_did(value):
    assert strict_loads(compact_json(value)) == strict_loads(json_dumps(value))


def test_what_orjson_refuses_is_encoded_by_json_dumps():
    deep: list = []
    current = deep
    for _ in range(300):
        current.append([])
        current = current[0]
    for value in ({"n": 2**70}, {1: "a", "b": 2}, deep, {"s": "\ud800"}):
        assert compact_json(value) == json_dumps(value)


@dataclasses.dataclass
class Point:
    x: int


def test_values_json_has_no_form_for_are_their_text():
    moment = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    ident = uuid.UUID(int=7)
    value = {"at": moment, "p": Point(1), "id": ident, "set": {3}}
    assert compact_json(value) == json_dumps(value)
    assert strict_loads(compact_json(value)) == {
        "at": "2026-12-07 12:00:00+00:00",
        "p": "Point(x=1)",
        "id": str(ident),
        "set": "{3}",
    }


def test_non_finite_floats_are_null_not_invalid_json():
    assert compact_json({"x": float("nan"), "y": [float("inf"), float("-inf")]}) == (
        '{"x":null,"y":[null,null]}'
    )


@pytest.mark.django_db(transaction=True)
async def test_a_tool_result_of_nan_and_infinity_is_stored_and_sent_as_text(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    comm, _ = await connect_user(user)
    result = {"mean": float("nan"), "bounds": [float("-inf"), float("inf")], "n": 1.5}
    await session.emitter.emit(
        ref,
        "tool_completed",
        {"tool_name": "stats", "tool_call_id": "c1", "result": result, "duration_ms": 3},
    )
    frame = strict_loads(await comm.receive_from(timeout=10))
    expected = {"mean": "nan", "bounds": ["-inf", "inf"], "n": 1.5}
    assert frame["type"] == "tool_completed" and frame["data"]["result"] == expected
    stored = await RunEvent.objects.aget(user=user, seq=frame["seq"])
    assert stored.payload["result"] == expected
    assert strict_loads(stored.frame) == frame
    await comm.disconnect()
