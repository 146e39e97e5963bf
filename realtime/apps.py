from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The Channels side: consumer, events, auth."""

    name = "realtime"
    default_auto_field = "django.db.models.BigAutoField"
