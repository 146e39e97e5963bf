"""manage.py ensure_demo_user: a local login for `make run`."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    """Create a demo user with a known password, for local use; an existing one is kept as is."""

    help = "Create the demo user (default demo/demo) for trying the app locally."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments."""
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="set the password even if the user exists (signs out its sessions)",
        )
        parser.add_argument("--url", default="", help="print this URL to open")

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the user unless it exists; say how to sign in."""
        model = get_user_model()
        user, created = model.objects.get_or_create(username=options["username"])
        if created or options["reset_password"]:
            # Setting a password ends the user's sessions: only when asked, or new.
            user.set_password(options["password"])
            user.is_staff = True
            user.is_superuser = True
            user.save()
            password = f"password {options['password']!r}"
        else:
            password = "its password unchanged (--reset-password to set it again)"
        verb = "created" if created else ("updated" if options["reset_password"] else "kept")
        self.stdout.write(f"demo user {user.username!r} {verb}, {password}")
        if options["url"]:
            self.stdout.write(
                f"open {options['url']} and sign in as {user.username!r}; "
                f"the admin is at {options['url'].rstrip('/')}/admin/"
            )
