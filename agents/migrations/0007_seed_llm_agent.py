"""Seed a disabled `assistant` agent backed by the OpenAI-compatible `llm` implementation."""

from django.db import migrations

ASSISTANT = {
    "name": "assistant",
    "description": "A language model (OpenAI-compatible API) with the built-in tools. "
    "Set LLM_BASE_URL, LLM_API_KEY and LLM_MODEL, then enable it (docs/llm.md).",
    "implementation": "agents.runtime.llm.LLMAgent",
    "allowed_tools": ["calculator", "clock", "kb_search"],
    "enabled": False,
    "config": {},
}


def seed(apps, schema_editor):
    apps.get_model("agents", "Agent").objects.get_or_create(name="assistant", defaults=ASSISTANT)


def unseed(apps, schema_editor):
    apps.get_model("agents", "Agent").objects.filter(name="assistant", runs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("agents", "0006_start_bucket")]

    operations = [migrations.RunPython(seed, unseed)]
