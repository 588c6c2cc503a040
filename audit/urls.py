"""The approvals API, included by the project's URLconf under ``api/`` (``include("audit.urls")``)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from audit.api import ApprovalRequestViewSet

router = DefaultRouter()
router.register("approvals", ApprovalRequestViewSet, basename="approval")

urlpatterns = router.urls
