from __future__ import annotations

from rest_framework.routers import DefaultRouter

from certificates import api

router = DefaultRouter()
router.register("requests", api.CertificateRequestViewSet, basename="certificate-request")

urlpatterns = router.urls
