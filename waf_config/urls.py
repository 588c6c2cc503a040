from __future__ import annotations

from rest_framework.routers import DefaultRouter

from waf_config import api

router = DefaultRouter()
router.register("rule-sets", api.RuleSetViewSet, basename="waf-rule-set")
router.register("versions", api.VersionViewSet, basename="waf-version")
router.register("deployments", api.DeploymentViewSet, basename="waf-deployment")
router.register("replay-sets", api.ReplaySetViewSet, basename="waf-replay-set")
router.register("replay-runs", api.ReplayRunViewSet, basename="waf-replay-run")
router.register("emergency-rules", api.EmergencyRuleViewSet, basename="waf-emergency-rule")

urlpatterns = router.urls
