"""The built-in tools against ordinary and hostile input."""

import pytest

from agents.runtime.tools import ToolError
from agents.runtime.tools_builtin import ClockTool, KnowledgeSearchTool, search_terms

pytestmark = pytest.mark.django_db(transaction=True)


async def test_kb_search_finds_the_best_article(seeded):
    result = await KnowledgeSearchTool().run({"query": "how do I stop a run", "limit": 2})
    assert result["hits"][0]["title"] == "Stopping a run"
    assert len(result["hits"]) <= 2


@pytest.mark.parametrize(
    "query",
    [
        "%",
        "_",
        "%%%%",
        "' OR 1=1 --",
        "\\",
        "\x00abc",
        "🙂🙂🙂",
        "a" * 200,
        " ".join(["word"] * 40),
    ],
    ids=[
        "percent",
        "underscore",
        "percents",
        "sql",
        "backslash",
        "nul",
        "emoji",
        "200-chars",
        "40-words",
    ],
)
async def test_kb_search_survives_hostile_queries(seeded, query):
    result = await KnowledgeSearchTool().run({"query": query})
    assert isinstance(result["hits"], list)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"query": "x" * 201}, "longer than 200"),
        ({"query": ""}, "non-empty string"),
        ({"query": ["a"]}, "non-empty string"),
        ({}, "non-empty string"),
        ({"query": "ok", "limit": 50}, "limit must be"),
        ({"query": "ok", "limit": True}, "limit must be"),
    ],
)
async def test_kb_search_refuses_bad_parameters(seeded, parameters, message):
    with pytest.raises(ToolError, match=message):
        await KnowledgeSearchTool().run(parameters)


def test_search_terms_are_bounded():
    terms = search_terms(" ".join(f"term{i}" for i in range(50)) + " the the the")
    assert len(terms) == 8 and len(set(terms)) == 8


async def test_clock_with_and_without_a_time_zone():
    plain = await ClockTool().run({})
    assert set(plain) == {"utc"}
    paris = await ClockTool().run({"timezone": "Europe/Paris"})
    assert paris["timezone"] == "Europe/Paris" and paris["local"][-6:] in {"+01:00", "+02:00"}
    with pytest.raises(ToolError, match="unknown time zone"):
        await ClockTool().run({"timezone": "../../etc/passwd"})
