"""Admin for API tokens: list and revoke; tokens are issued by `manage.py issue_token`."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from realtime.models import ApiToken
from realtime.tokens import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens show only their prefix; revoking is the one change allowed."""

    list_display = [
        "prefix",
        "user",
        "name",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "name", "prefix"]
    readonly_fields = [
        "user",
        "name",
        "prefix",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Tokens are issued by `manage.py issue_token`, which shows the secret once."""
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        """Revoke tokens: they stop authenticating at once."""
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token_id=token.pk)
            count += 1
        self.message_user(request, f"{count} tokens revoked", messages.SUCCESS)
