"""manage.py prune_events --older-than DAYS: retention for stored run events."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agents.events.store import events_prune


class Command(BaseCommand):
    """Delete events of ended runs older than a number of days; safe while serving."""

    help = "Delete stored events older than DAYS days (events of runs still going are kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments."""
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS")

    def handle(self, *args: Any, **options: Any) -> None:
        """Prune and report how many events went."""
        days = options["older_than"]
        if days < 0:
            raise CommandError("--older-than must be 0 or more days")
        deleted = events_prune(older_than=timezone.now() - timedelta(days=days))
        self.stdout.write(f"deleted {deleted} events older than {days:g} days")
