"""JSON API for certificate requests (token auth, as the WAF API): file a request, read requests. Filing goes
through the same service as admin and ``manage.py request_certificate`` (policy, pre-flight, four eyes); deciding
goes through the shared approvals API (``/api/approvals/{id}/approve|reject/``)."""

from __future__ import annotations

from typing import Any

from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ParseError, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from certificates.models import AcmeAccount, CertificateRequest, DnsUpdateServer
from certificates.services import requests as request_service
from certificates.services.seams import GatewayGroup


class CertificateRequestSerializer(serializers.ModelSerializer[CertificateRequest]):
    group: serializers.SlugRelatedField[GatewayGroup] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    issuer: serializers.SlugRelatedField[AcmeAccount] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    approval = serializers.SerializerMethodField()

    class Meta:
        model = CertificateRequest
        fields = ("id", "domains", "group", "issuer", "key_type", "challenge_type", "justification", "source",
                  "requested_by_name", "state", "auto_approved", "policy_notes", "preflight", "error",
                  "certificate", "created_at", "approval")

    def get_approval(self, obj: CertificateRequest) -> int | None:
        approval = request_service.approval_for(obj)
        return approval.pk if approval is not None else None


class NewRequestSerializer(serializers.Serializer[dict[str, Any]]):
    domains = serializers.ListField(child=serializers.CharField(max_length=253), min_length=1, max_length=100)
    group = serializers.SlugRelatedField(slug_field="name", queryset=GatewayGroup.objects.all())
    issuer = serializers.SlugRelatedField(slug_field="name", queryset=AcmeAccount.objects.all())
    justification = serializers.CharField(max_length=2000)
    key_type = serializers.CharField(required=False)
    challenge_type = serializers.CharField(required=False)
    dns_server = serializers.SlugRelatedField(slug_field="name", queryset=DnsUpdateServer.objects.all(),
                                              required=False, allow_null=True)


class CertificateRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                                viewsets.GenericViewSet[CertificateRequest]):
    permission_classes = [IsAuthenticated]
    serializer_class = CertificateRequestSerializer
    queryset = CertificateRequest.objects.select_related("group", "issuer").order_by("-created_at")

    def get_queryset(self) -> Any:
        if not self.request.user.has_perm("certificates.view_certificaterequest"):
            raise PermissionDenied("needs the certificates.view_certificaterequest permission")
        return super().get_queryset()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise ParseError("the request body must be a JSON object")
        if not request.user.has_perm("certificates.add_certificaterequest"):
            raise PermissionDenied("needs the certificates.add_certificaterequest permission")
        incoming = NewRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        options = {k: data[k] for k in ("key_type", "challenge_type", "dns_server") if data.get(k) is not None}
        try:
            filed = request_service.file_request(domains=data["domains"], group=data["group"], issuer=data["issuer"],
                                                 requested_by=request.user, justification=data["justification"],
                                                 **options)
        except request_service.RequestRefused as exc:
            return Response({"detail": str(exc), "rule": exc.rule}, status=status.HTTP_400_BAD_REQUEST)
        return Response(CertificateRequestSerializer(filed).data, status=status.HTTP_201_CREATED)
