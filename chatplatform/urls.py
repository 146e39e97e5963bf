"""HTTP URL routes."""

from django.contrib import admin
from django.urls import include, path

from chatplatform import ops, views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("api/threads/", views.thread_list, name="thread-list"),
    path("api/threads/<str:thread_id>/events/", views.thread_history, name="thread-history"),
    path("api/inputs/pending/", views.inputs_pending, name="inputs-pending"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
]
