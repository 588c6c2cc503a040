from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from rest_framework.authtoken.views import obtain_auth_token

from worker_project import views

# Apps are included by name, never imported: this package imports no app (import contracts in pyproject.toml).

urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
    path("logs/", include("logpipeline.urls")),  # logs/ingest: Vector / Fluent Bit HTTP sinks (docs/logs.md)
    path("admin/", admin.site.urls),
    path("api/token/", obtain_auth_token, name="api-token"),
    path("api/waf/", include("waf_config.urls")),
    path("api/certificates/", include("certificates.urls")),  # api/certificates/requests/
    path("api/", include("audit.urls")),  # api/approvals/
]

if settings.SERVE_STATIC:
    # Only the admin's CSS/JS, collected into STATIC_ROOT: small and cacheable, so no separate static server.
    urlpatterns.append(
        re_path(rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
    )
