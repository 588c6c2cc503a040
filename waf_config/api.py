"""JSON API (Django REST framework): rule sets, versions, validation, replay reports, approvals, deployments,
emergency rules. Token auth; reading needs the model's view permission and every change goes through the same
service as admin, which checks the role's permission (author, approver, deployer) and the four-eyes rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from audit.approvals import ApprovalError
from gateways.models import GatewayGroup
from waf_config.models import (
    Deployment,
    EmergencyRule,
    ReplayRun,
    ReplayRunStatus,
    ReplaySet,
    RuleSet,
    RuleSetVersion,
)
from waf_config.serializers import (
    DeploymentSerializer,
    EmergencyRuleSerializer,
    NewVersionSerializer,
    ReplayRunSerializer,
    ReplayRunSummarySerializer,
    ReplaySetSerializer,
    RuleSetSerializer,
    VersionSerializer,
)
from waf_config.services import deployment as deploy_service
from waf_config.services import emergency as emergency_service
from waf_config.services import versions as version_service
from waf_config.services.common import NotPermitted, WafError


def _fields(request: Request) -> dict[str, Any]:
    """The request body's fields: a JSON object (or a form); any other JSON value is a 400, not a 500."""
    if not isinstance(request.data, dict):
        raise ParseError("the request body must be a JSON object")
    return request.data


class CanView(BasePermission):
    """The view permission of the viewset's model (admin's read access)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        model = view.queryset.model
        return bool(request.user and request.user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}"))


def _call(fn: Callable[[], Any], ok: Callable[[Any], Any], code: int = status.HTTP_200_OK) -> Response:
    """Run a service call; refusals become 403 (role, four eyes) or 400 (state, content) with the reason."""
    try:
        result = fn()
    except (NotPermitted, ApprovalError) as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
    except WafError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(ok(result), status=code)


class RuleSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     viewsets.GenericViewSet):
    queryset = RuleSet.objects.order_by("name")
    serializer_class = RuleSetSerializer
    permission_classes = [IsAuthenticated, CanView]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not request.user.has_perm("waf_config.add_ruleset"):
            return Response({"detail": "you lack the permission waf_config.add_ruleset"}, status=403)
        return super().create(request, *args, **kwargs)

    @action(detail=True, methods=["get", "post"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        rule_set = self.get_object()
        if request.method == "GET":
            qs = RuleSetVersion.objects.filter(rule_set=rule_set).select_related("rule_set", "author")
            return Response(VersionSerializer(qs.order_by("-number")[:200], many=True).data)
        data = NewVersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _call(lambda: version_service.create_version(rule_set, data.validated_data["content"], request.user,
                                                            data.validated_data["comment"]),
                     lambda v: VersionSerializer(v).data, status.HTTP_201_CREATED)


class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``POST …/{id}/validate/``, ``replay/ {"replay_set"}``, ``submit/ {"justification"}``, ``approve/ {"comment"}``,
    ``reject/ {"comment"}``, ``deploy/ {"canary_group", "soak_seconds"}``, ``rollback-to/ {"groups"}``;
    ``GET …/{id}/replay-report/``."""

    queryset = RuleSetVersion.objects.select_related("rule_set", "author").order_by("-id")
    serializer_class = VersionSerializer
    permission_classes = [IsAuthenticated, CanView]

    def get_queryset(self) -> Any:
        qs = super().get_queryset()
        for key in ("state", "rule_set__name"):
            if key in self.request.query_params:
                qs = qs.filter(**{key: self.request.query_params[key]})
        return qs

    def _version(self) -> RuleSetVersion:
        return self.get_object()

    def _show(self, _: Any = None) -> Any:
        return VersionSerializer(RuleSetVersion.objects.get(pk=self.kwargs["pk"])).data

    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        return _call(lambda: version_service.validate_version(version, request.user), self._show)

    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        name = _fields(request).get("replay_set")
        replay_set = ReplaySet.objects.filter(name=name).first() if name else \
            ReplaySet.objects.order_by("-created_at").first()
        if replay_set is None:
            return Response({"detail": f"no replay set {name or ''}".strip()}, status=400)
        background = _fields(request).get("background")
        if background is True or (background is None and version_service.replay_in_background(replay_set)):
            # a large set: queued as the task run_replay; poll GET /api/waf/replay-runs/{id}/ for its progress
            return _call(lambda: version_service.request_replay(version, replay_set, request.user),
                         lambda run: ReplayRunSummarySerializer(run).data, status.HTTP_202_ACCEPTED)
        return _call(lambda: version_service.replay_version(version, replay_set, request.user),
                     lambda run: ReplayRunSerializer(run).data, status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"], url_path="replay-report")
    def replay_report(self, request: Request, pk: str | None = None) -> Response:
        run = self._version().replays.filter(status=ReplayRunStatus.DONE).order_by("-id").first()
        if run is None:
            return Response({"detail": "not replayed yet"}, status=404)
        return Response(ReplayRunSerializer(run).data)

    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        return _call(lambda: version_service.submit_for_approval(version, request.user,
                                                                 str(_fields(request).get("justification", ""))),
                     lambda r: {"approval_request": r.pk, "state": r.state})

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        return _call(lambda: version_service.approve_version(version, request.user,
                                                             str(_fields(request).get("comment", ""))), self._show)

    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        return _call(lambda: version_service.reject_version(version, request.user,
                                                            str(_fields(request).get("comment", ""))), self._show)

    @action(detail=True, methods=["post"])
    def deploy(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        group = None
        if _fields(request).get("canary_group"):
            group = GatewayGroup.objects.filter(name=_fields(request)["canary_group"]).first()
            if group is None:
                return Response({"detail": f"no group {_fields(request)['canary_group']!r}"}, status=400)
        soak = _fields(request).get("soak_seconds")
        return _call(lambda: deploy_service.start_deployment(version, request.user, canary_group=group,
                                                             soak_seconds=int(soak) if soak is not None else None),
                     lambda d: DeploymentSerializer(d).data, status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], url_path="rollback-to")
    def rollback_to(self, request: Request, pk: str | None = None) -> Response:
        version = self._version()
        names = _fields(request).get("groups")
        groups = list(GatewayGroup.objects.filter(name__in=names)) if names else None
        return _call(lambda: deploy_service.rollback_to(version, request.user, groups,
                                                        reason=str(_fields(request).get("reason", "manual rollback"))),
                     lambda d: DeploymentSerializer(d).data)


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Deployment.objects.select_related("canary_group", "requested_by").order_by("-id")
    serializer_class = DeploymentSerializer
    permission_classes = [IsAuthenticated, CanView]


class ReplayRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A replay's status and progress (``?version=ID``), the report once it is done."""

    queryset = ReplayRun.objects.select_related("replay_set").order_by("-id")
    serializer_class = ReplayRunSerializer
    permission_classes = [IsAuthenticated, CanView]

    def get_queryset(self) -> Any:
        qs = super().get_queryset()
        if "version" in self.request.query_params:
            qs = qs.filter(version_id=self.request.query_params["version"])
        if self.action == "list":
            return qs.defer("report")
        return qs

    def get_serializer_class(self) -> Any:
        return ReplayRunSummarySerializer if self.action == "list" else ReplayRunSerializer


class ReplaySetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ReplaySet.objects.order_by("-created_at")
    serializer_class = ReplaySetSerializer
    permission_classes = [IsAuthenticated, CanView]


class EmergencyRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                           viewsets.GenericViewSet):
    """``POST {"pattern", "kind", "action", "reason", "expires_in_seconds" | "expires_at"}``; ``…/{id}/withdraw/``."""

    queryset = EmergencyRule.objects.order_by("-id")
    serializer_class = EmergencyRuleSerializer
    permission_classes = [IsAuthenticated, CanView]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        ser = self.get_serializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        seconds = d.get("expires_in_seconds")
        return _call(lambda: emergency_service.create_emergency_rule(
            d["pattern"], actor=request.user, reason=d["reason"], kind=d.get("kind", "ip"),
            match_field=d.get("match_field", "ip"), action=d.get("action", "block"),
            expires_in=timedelta(seconds=seconds) if seconds else None, expires_at=d.get("expires_at")),
            lambda r: EmergencyRuleSerializer(r).data, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        rule = self.get_object()
        return _call(lambda: emergency_service.withdraw_emergency_rule(rule, request.user, "withdrawn via the API"),
                     lambda _: EmergencyRuleSerializer(EmergencyRule.objects.get(pk=rule.pk)).data)
