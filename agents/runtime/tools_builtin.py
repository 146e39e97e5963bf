"""The built-in tools: calculator, clock and kb_search."""

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.db import database_sync_to_async
from django.db.models import Q

from agents.models import KnowledgeArticle
from agents.runtime.calculator import CalculationError, evaluate, format_number
from agents.runtime.tools import Tool, ToolError

MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 8
MAX_HITS = 5


def _string_param(parameters: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = parameters.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"parameter {name!r} must be a non-empty string")
    return value


class CalculatorTool(Tool):
    """Evaluates arithmetic safely."""

    name = "calculator"
    description = "Evaluate an arithmetic expression, e.g. {'expression': '6*7'}."
    parameters_schema = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2+3)*7"}},
        "required": ["expression"],
    }

    def check_parameters(self, parameters: dict[str, Any]) -> None:
        """Check the schema, then that the expression evaluates (it is pure and bounded)."""
        super().check_parameters(parameters)
        try:
            evaluate(parameters["expression"])
        except CalculationError as exc:
            raise ToolError(str(exc)) from exc

    async def run(self, parameters: dict[str, Any]) -> Any:
        """Evaluate parameters['expression']."""
        expression = _string_param(parameters, "expression")
        assert expression is not None
        try:
            value = evaluate(expression)
        except CalculationError as exc:
            raise ToolError(str(exc)) from exc
        return {"expression": expression, "value": value, "text": format_number(value)}


class ClockTool(Tool):
    """Tells the current time, in UTC and optionally in a named time zone."""

    name = "clock"
    description = "Current time; optional {'timezone': 'Europe/Paris'}."
    parameters_schema = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA name"}},
    }

    async def run(self, parameters: dict[str, Any]) -> Any:
        """Return the current time."""
        now = datetime.now(UTC)
        result: dict[str, Any] = {"utc": now.isoformat(timespec="seconds")}
        zone = _string_param(parameters, "timezone", required=False)
        if zone is not None:
            try:
                tz = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ToolError(f"unknown time zone {zone[:64]!r}") from exc
            result["timezone"] = zone
            result["local"] = now.astimezone(tz).isoformat(timespec="seconds")
        return result


def search_terms(query: str) -> list[str]:
    """Split a query into at most 8 distinct lower-case words of 3+ characters."""
    terms: list[str] = []
    for word in re.findall(r"[\w-]{3,40}", query.lower()):
        if word not in terms:
            terms.append(word)
    return terms[:MAX_QUERY_TERMS]


def kb_search(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """Return the knowledge-base articles best matching `query`."""
    terms = search_terms(query)
    if not terms:
        return []
    match = Q()
    for term in terms:
        match |= Q(title__icontains=term) | Q(body__icontains=term) | Q(tags__icontains=term)
    scored = []
    for article in KnowledgeArticle.objects.filter(match)[:200]:
        haystack = f"{article.title} {article.tags} {article.body}".lower()
        title = article.title.lower()
        score = sum(haystack.count(t) + 3 * title.count(t) for t in terms)
        scored.append((score, article.title, article))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [{"title": a.title, "snippet": a.body[:240], "score": s} for s, _, a in scored[:limit]]


class KnowledgeSearchTool(Tool):
    """Searches the knowledge base kept in the database."""

    name = "kb_search"
    description = "Search the knowledge base: {'query': 'reconnect', 'limit': 3}."
    parameters_schema = {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["query"],
    }

    async def run(self, parameters: dict[str, Any]) -> Any:
        """Return the articles matching parameters['query']."""
        query = _string_param(parameters, "query")
        assert query is not None
        if len(query) > MAX_QUERY_CHARS:
            raise ToolError(f"query longer than {MAX_QUERY_CHARS} characters")
        limit = parameters.get("limit", 3)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_HITS:
            raise ToolError(f"limit must be an integer from 1 to {MAX_HITS}")
        hits = await database_sync_to_async(kb_search)(query, limit)
        return {"query": query, "hits": hits}
