"""What the JSON API shows of rule sets, versions, replay runs, deployments and emergency rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from waf_config.models import Deployment, EmergencyRule, ReplayRun, ReplaySet, RuleSet, RuleSetVersion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from gateways.models import GatewayGroup


class RuleSetSerializer(serializers.ModelSerializer):
    class Meta:
        model = RuleSet
        fields = ("id", "name", "kind", "description", "created_at")
        read_only_fields = ("id", "created_at")


class ReplayRunSummarySerializer(serializers.ModelSerializer):
    progress = serializers.CharField(read_only=True)
    replay_set: serializers.SlugRelatedField[ReplaySet] = serializers.SlugRelatedField(
        slug_field="name", read_only=True)

    class Meta:
        model = ReplayRun
        fields: tuple[str, ...] = ("id", "version", "replay_set", "baseline", "status", "progress",
                                   "requests_total", "requests_replayed", "newly_blocked", "newly_allowed", "error",
                                   "started_at", "finished_at")


class ReplayRunSerializer(ReplayRunSummarySerializer):
    class Meta(ReplayRunSummarySerializer.Meta):
        fields = (*ReplayRunSummarySerializer.Meta.fields, "report")


class VersionSerializer(serializers.ModelSerializer):
    rule_set: serializers.SlugRelatedField[RuleSet] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    findings = serializers.JSONField(source="validation_errors", read_only=True)
    latest_replay = serializers.SerializerMethodField()

    class Meta:
        model = RuleSetVersion
        fields = ("id", "rule_set", "number", "state", "validation_status", "findings", "checksum", "author",
                  "parent", "comment", "created_at", "validated_at", "latest_replay", "content")
        read_only_fields = fields

    def get_latest_replay(self, obj: RuleSetVersion) -> dict[str, Any] | None:
        run = obj.replays.order_by("-id").first()
        return ReplayRunSummarySerializer(run).data if run else None


class NewVersionSerializer(serializers.Serializer):
    content = serializers.CharField(trim_whitespace=False)
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class DeploymentSerializer(serializers.ModelSerializer):
    canary_group: serializers.SlugRelatedField[GatewayGroup] = serializers.SlugRelatedField(
        slug_field="name", read_only=True)
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True)

    class Meta:
        model = Deployment
        fields = ("id", "version", "state", "canary_group", "groups", "soak_seconds", "previous",
                  "resource_versions", "outcome", "requested_by", "rollback_of", "created_at", "canary_acked_at",
                  "fleet_started_at", "finished_at")
        read_only_fields = fields


class ReplaySetSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReplaySet
        fields = ("id", "name", "source", "description", "request_count", "created_at")
        read_only_fields = fields


class EmergencyRuleSerializer(serializers.ModelSerializer):
    expires_in_seconds = serializers.IntegerField(write_only=True, required=False, min_value=1)

    class Meta:
        model = EmergencyRule
        fields = ("id", "kind", "pattern", "match_field", "action", "reason", "created_by", "created_by_type",
                  "created_at", "expires_at", "expires_in_seconds", "withdrawn_at", "withdrawn_by")
        read_only_fields = ("id", "created_by", "created_by_type", "created_at", "withdrawn_at", "withdrawn_by")
        extra_kwargs = {"expires_at": {"required": False}}
