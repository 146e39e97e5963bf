"""Health view of the process."""

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Say the process is alive; touches no dependency."""
    return JsonResponse({"status": "ok"})
