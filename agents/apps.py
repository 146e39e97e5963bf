from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """Agents, their sessions, runs and events."""

    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"
