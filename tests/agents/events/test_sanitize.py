"""Each sanitising rule of the design, applied before events are stored or sent."""

import pytest

from agents.events.sanitize import REDACTED, sanitize_parameters, sanitize_result


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "Secret",
        "api_key",
        "KEY",
        "access_token",
        "Authorization",
        "auth",
        "credentials",
        "client_credential",
    ],
)
def test_sensitive_parameter_keys_are_redacted(key):
    assert sanitize_parameters({key: "hunter2", "city": "Paris"}) == {
        key: REDACTED,
        "city": "Paris",
    }


def test_redaction_applies_at_any_depth_and_in_lists():
    params = {"outer": {"token": "t", "items": [{"password": "p", "ok": 1}]}}
    assert sanitize_parameters(params) == {
        "outer": {"token": REDACTED, "items": [{"password": REDACTED, "ok": 1}]}
    }


def test_parameter_strings_are_cut_at_200():
    cleaned = sanitize_parameters({"q": "a" * 500, "nested": ["b" * 201]})
    assert cleaned == {"q": "a" * 200, "nested": ["b" * 200]}


def test_parameter_lists_are_not_cut():
    assert sanitize_parameters({"xs": list(range(50))}) == {"xs": list(range(50))}


def test_result_strings_are_cut_at_500_and_lists_at_10():
    cleaned = sanitize_result({"text": "c" * 900, "rows": list(range(25)), "deep": [["d" * 600]]})
    assert cleaned == {"text": "c" * 500, "rows": list(range(10)), "deep": [["d" * 500]]}


def test_result_secrets_are_redacted_too():
    assert sanitize_result({"api_key": "sk-123", "value": 3}) == {"api_key": REDACTED, "value": 3}


def test_non_json_values_become_text_and_scalars_pass():
    import datetime as dt

    moment = dt.datetime(2026, 1, 2, 3, 4, 5)
    assert sanitize_result({"at": moment, "n": 1.5, "b": True, "none": None}) == {
        "at": "2026-01-02 03:04:05",
        "n": 1.5,
        "b": True,
        "none": None,
    }
    assert sanitize_result(("a", "b")) == ["a", "b"]
    assert sanitize_result("e" * 501) == "e" * 500


def test_deep_nesting_is_bounded():
    deep = current = {}
    for _ in range(100):
        current["n"] = {}
        current = current["n"]
    cleaned = sanitize_parameters(deep)
    depth = 0
    while isinstance(cleaned, dict):
        cleaned = cleaned["n"]
        depth += 1
    assert cleaned == "[TRUNCATED]" and depth == 21
