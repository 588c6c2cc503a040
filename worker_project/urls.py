from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from audit.api import ApprovalRequestViewSet
from logpipeline import http as log_intake
from worker_project import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
    path("logs/ingest", log_intake.intake, name="log-intake"),  # Vector / Fluent Bit HTTP sinks (docs/logs.md)
    path("admin/", admin.site.urls),
    path("api/token/", obtain_auth_token, name="api-token"),
    path("api/waf/", include("waf_config.urls")),
]

approvals_router = DefaultRouter()
approvals_router.register("approvals", ApprovalRequestViewSet, basename="approval")
urlpatterns.append(path("api/", include(approvals_router.urls)))

if settings.SERVE_STATIC:
    # Only the admin's CSS/JS, collected into STATIC_ROOT: small and cacheable, so no separate static server.
    urlpatterns.append(
        re_path(rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
    )
