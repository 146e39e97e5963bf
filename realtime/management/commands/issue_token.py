"""manage.py issue_token USERNAME [--create-user] [--days N] [--name NAME]."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.tokens import token_issue, user_get_or_create


class Command(BaseCommand):
    """Print a new API token for a user."""

    help = "Print a new bearer token for USERNAME (shown once; only its digest is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments."""
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="create the user")
        parser.add_argument(
            "--days", type=int, default=None, help="days until it expires (0: never)"
        )
        parser.add_argument("--name", default="", help="a label for the token")

    def handle(self, *args: Any, **options: Any) -> None:
        """Issue the token and print it."""
        try:
            user = user_get_or_create(username=options["username"], create=options["create_user"])
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        days = options["days"]
        if days is None:
            days = settings.API_TOKEN_DEFAULT_DAYS
        if days < 0:
            raise CommandError("--days must be 0 (never expires) or more")
        self.stdout.write(token_issue(user=user, name=options["name"], days=days or None))
