"""JSON API for approval requests (any app's): list, read, approve, reject. Decisions go through audit.approvals,
so the API refuses exactly what admin and commands refuse (the requester deciding, a missing permission)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from audit import approvals
from audit.models import ApprovalRequest


def _fields(request: Request) -> dict[str, Any]:
    """The request body's fields: a JSON object (or a form); any other JSON value is a 400, not a 500."""
    if not isinstance(request.data, dict):
        raise ParseError("the request body must be a JSON object")
    return request.data


class ApprovalRequestSerializer(serializers.ModelSerializer):
    decided_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = ("id", "subject_type", "subject_id", "action", "permission", "summary", "requested_by_name",
                  "justification", "state", "decided_by", "comment", "created_at", "decided_at")
        read_only_fields = fields


class CanViewApprovals(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("audit.view_approvalrequest"))


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET /api/approvals/?state=pending&action=…``, ``POST /api/approvals/{id}/approve/ {"comment"}``,
    ``POST /api/approvals/{id}/reject/ {"comment"}``."""

    serializer_class = ApprovalRequestSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        qs = ApprovalRequest.objects.select_related("decided_by").order_by("-created_at")
        for key in ("state", "action", "subject_type", "subject_id"):
            if key in self.request.query_params:
                qs = qs.filter(**{key: self.request.query_params[key]})
        return qs

    def get_permissions(self) -> list[BasePermission]:
        # reading needs the view permission; deciding needs the request's own permission (checked by the service)
        if self.action in ("list", "retrieve"):
            return [IsAuthenticated(), CanViewApprovals()]
        return [IsAuthenticated()]

    def _decide(self, request: Request, decide: Any) -> Response:
        obj = self.get_object()
        try:
            obj = decide(obj, request.user, str(_fields(request).get("comment", "")))
        except approvals.ApprovalError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        return Response(self.get_serializer(obj).data)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approvals.approve)

    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approvals.reject)
