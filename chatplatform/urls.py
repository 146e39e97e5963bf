"""HTTP URL routes."""

from django.contrib import admin
from django.urls import include, path

from chatplatform import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
]
