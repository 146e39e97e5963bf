"""Admin for API tokens: list and revoke; tokens are issued by `manage.py issue_token`."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from realtime.models import ApiToken
from realtime.tokens import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are read-only and show only their prefix; revoking is the one change allowed."""

    change_form_template = "admin/realtime/apitoken/change_form.html"

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

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A token's page has nothing to save; the list's revoke action stays."""
        return obj is None and super().has_change_permission(request)

    def get_urls(self) -> list[URLPattern]:
        """Add the Revoke button's URL."""
        revoke = path(
            "<path:object_id>/revoke/",
            self.admin_site.admin_view(require_POST(self.revoke_view)),
            name="realtime_apitoken_revoke",
        )
        return [revoke, *super().get_urls()]

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Revoke one token from its page."""
        if not request.user.has_perm("realtime.change_apitoken"):
            raise PermissionDenied
        token = get_object_or_404(ApiToken, pk=object_id)
        if token.revoked_at is None:
            token_revoke(token_id=token.pk)
            self.message_user(request, f"token {token.prefix}… revoked", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:realtime_apitoken_change", args=[token.pk]))

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        """Revoke tokens: they stop authenticating at once."""
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token_id=token.pk)
            count += 1
        self.message_user(request, f"{count} tokens revoked", messages.SUCCESS)
