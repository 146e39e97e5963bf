"""manage.py ensure_demo_user: a local login for `make run`."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    """Create (or reset) a demo user with a known password, for local use only."""

    help = "Create the demo user (default demo/demo) for trying the app locally."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments."""
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        """Create or update the user."""
        model = get_user_model()
        user, created = model.objects.get_or_create(username=options["username"])
        user.set_password(options["password"])
        user.is_staff = True
        user.is_superuser = True
        user.save()
        verb = "created" if created else "updated"
        self.stdout.write(f"demo user {user.username!r} {verb} (password {options['password']!r})")
