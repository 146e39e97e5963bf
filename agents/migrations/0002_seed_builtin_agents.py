"""Seed the built-in agents and the small knowledge base."""

from django.db import migrations

AGENTS = [
    {
        "name": "triage",
        "description": "Answers with tools: calculator for arithmetic, clock for the time, "
        "kb_search for everything else.",
        "implementation": "agents.runtime.triage.TriageAgent",
        "allowed_tools": ["calculator", "clock", "kb_search"],
    },
    {
        "name": "stepper",
        "description": "Demo agent: thinks in options.steps steps (default 5, at most 100) "
        "with options.delay_ms between them (default 200, at most 5000), one tool call a step.",
        "implementation": "agents.runtime.stepper.StepperAgent",
        "allowed_tools": ["calculator"],
    },
]

ARTICLES = [
    (
        "Reconnecting",
        "If the connection drops, the page reconnects by itself and resumes "
        "from the last event it saw, so no step of a run is lost.",
        "reconnect websocket resume",
    ),
    (
        "Stopping a run",
        "Press Stop, or send stop_agent with the run id: the run ends with "
        "agent_cancelled and its status becomes cancelled.",
        "stop cancel run",
    ),
    (
        "Agents",
        "triage answers questions with tools (calculator, clock, kb_search); stepper "
        "is a demo agent that works in steps.",
        "agents triage stepper",
    ),
    (
        "API tokens",
        "Scripts authenticate with 'Authorization: Bearer <token>'; create one "
        "with 'python manage.py issue_token USERNAME'.",
        "token auth api bearer",
    ),
    (
        "Several tabs",
        "Every open tab of a user receives every event of that user's runs, live.",
        "tabs browser live",
    ),
    (
        "Retention",
        "Events are kept for replay until pruned by retention; a resume that asks "
        "for pruned events says recovered=false.",
        "retention prune history",
    ),
]


def seed(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    KnowledgeArticle = apps.get_model("agents", "KnowledgeArticle")
    for spec in AGENTS:
        Agent.objects.update_or_create(name=spec["name"], defaults=spec)
    for title, body, tags in ARTICLES:
        KnowledgeArticle.objects.get_or_create(title=title, defaults={"body": body, "tags": tags})


def unseed(apps, schema_editor):
    apps.get_model("agents", "Agent").objects.filter(
        name__in=[a["name"] for a in AGENTS], runs__isnull=True
    ).delete()
    apps.get_model("agents", "KnowledgeArticle").objects.filter(
        title__in=[a[0] for a in ARTICLES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
