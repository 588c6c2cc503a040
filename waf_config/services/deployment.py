"""Deployment: approved -> canary group -> soak with no NACK -> every group; rollback on a NACK or on demand.

What a group runs is a pointer (``GroupVersion``: group + file kind -> version); the ``waf_rules`` and ``config``
builders registered with the push plane return the pointed version's content, re-validated, and nothing else —
so only content that passed the validator and was approved can ever be built for a Gateway. Moving the pointer
and publishing happen in one transaction; waiting for ACKs happens outside it (wait_for_acks must see the grpc
replicas' commits).

``run_deployment`` is safe to run twice (a Celery redelivery): each step starts from the stored state, publishing
an unchanged state is no new version, and a PostgreSQL advisory lock keeps two runs of one deployment apart.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record_event
from gateways.intake import BlockCounts, block_rate_source
from gateways.models import GatewayCredential, GatewayGroup, ResourceVersion
from gateways.services import InvalidResource, publish_desired_state, register_resource, wait_for_acks
from waf_config.models import (
    ACTIVE_DEPLOYMENT_STATES,
    Deployment,
    DeploymentState,
    GroupVersion,
    RuleSetKind,
    RuleSetVersion,
    ValidationStatus,
    VersionState,
)

from .common import WafError, actor_of, require_perm
from .versions import checksum, file_name, validate_content

logger = logging.getLogger(__name__)

DEPLOY_PERMISSION = "waf_config.deploy_rulesetversion"
# file kind -> push-plane resource type: the Gateway's rule file, its gateway.yaml, and one SecRule file per group
# (written into the directory gateway.yaml's waf.modsecurity.rules_path names; docs/waf.md says why one)
RESOURCE_OF_KIND: dict[str, str] = {RuleSetKind.WAF_RULES: "waf_rules", RuleSetKind.GATEWAY_CONFIG: "config",
                                    RuleSetKind.MODSECURITY: "modsecurity"}
# what the reference agent (and a Gateway's rules_path scan) accepts as the SecRule file's name
MODSECURITY_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.conf$")
SERVABLE_STATES = (VersionState.CANARY, VersionState.DEPLOYED)


def current_version(kind: str, group: GatewayGroup | str | None) -> RuleSetVersion | None:
    """The version of ``kind`` a group runs (group None: the most recently pointed one of any group)."""
    qs = GroupVersion.objects.filter(kind=kind).select_related("version__rule_set")
    if group is not None:
        qs = qs.filter(group__name=group) if isinstance(group, str) else qs.filter(group=group)
    pointer = qs.order_by("-updated_at").first()
    return pointer.version if pointer else None


# ------------------------------------------------------------------------------------------------ builders


def _build(kind: str) -> Callable[[GatewayGroup], dict[str, Any] | None]:
    def build(group: GatewayGroup) -> dict[str, Any] | None:
        pointer = (GroupVersion.objects.filter(group=group, kind=kind).select_related("version__rule_set").first())
        if pointer is None:
            return None  # nothing deployed to this group yet: the push plane stores and sends nothing
        version = pointer.version
        if version.validation_status != ValidationStatus.VALID or version.state not in SERVABLE_STATES:
            raise InvalidResource(f"{version} is {version.state} (validation {version.validation_status}): "
                                  "only a validated, approved version is pushed")
        if checksum(version.content) != version.checksum:
            raise InvalidResource(f"{version}: content does not match its checksum")
        report = validate_content(kind, version.content, file_name(version.rule_set))
        if not report.ok:  # never push what the Gateway would reject, whatever the stored status says
            raise InvalidResource(f"{version} does not validate: {report.errors[0].message}")
        return {"name": file_name(version.rule_set), "content": version.content}

    return build


def _validator(kind: str) -> Callable[[dict[str, Any]], list[str]]:
    """The publish seam's own check: whoever builds a payload of this type, it must validate as the Gateway's
    loader would accept it (FORMATS §a/§b), or the push plane stores and sends nothing."""
    def check(data: dict[str, Any]) -> list[str]:
        name = str(data.get("name") or "rules.conf")
        report = validate_content(kind, str(data.get("content", "")), name)
        problems = [f.message for f in report.errors]
        if kind == RuleSetKind.MODSECURITY and not MODSECURITY_FILE_NAME.match(name):
            problems.append(f"{name!r} is not a plain <name>.conf file name (the Gateway reads only *.conf)")
        return problems
    return check


def register_resources() -> None:
    for kind, resource_type in RESOURCE_OF_KIND.items():
        register_resource(resource_type, _build(kind), validator=_validator(kind))


# ------------------------------------------------------------------------------------------------ steps


def _point(group: GatewayGroup, version: RuleSetVersion, deployment: Deployment | None) -> ResourceVersion:
    GroupVersion.objects.update_or_create(group=group, kind=version.rule_set.kind,
                                          defaults={"version": version, "deployment": deployment})
    [rv] = publish_desired_state(RESOURCE_OF_KIND[version.rule_set.kind], group,
                                 actor=f"waf_config.deployment:{deployment.pk if deployment else '-'}")
    return rv


def start_deployment(version: RuleSetVersion, user: Any, *, canary_group: GatewayGroup | None = None,
                     soak_seconds: int | None = None, enqueue: bool = True) -> Deployment:
    """Begin a rollout of an approved version (the task ``run_deployment`` carries it on)."""
    require_perm(user, DEPLOY_PERMISSION, "deploy a rule-set version")
    kind = version.rule_set.kind
    if version.state != VersionState.APPROVED:
        raise WafError(f"{version} is {version.state}; only an approved version is deployed")
    if canary_group is None:
        canary_group = GatewayGroup.objects.filter(name=settings.WAF_CANARY_GROUP).first()
        if canary_group is None:
            raise WafError(f"there is no canary group {settings.WAF_CANARY_GROUP!r} (create it, or name another)")
    with transaction.atomic():
        if connection.vendor == "postgresql":  # two starts at once: the second sees the first's row
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                            [zlib.crc32(b"waf-deployment-start") - 2**31, zlib.crc32(kind.encode()) - 2**31])
        busy = Deployment.objects.select_for_update().filter(version__rule_set__kind=kind,
                                                             state__in=ACTIVE_DEPLOYMENT_STATES).first()
        if busy is not None:
            raise WafError(f"a rollout of {busy.version} is in flight ({busy.state}); wait for it or roll it back")
        deployment = Deployment.objects.create(
            version=version, canary_group=canary_group, state=DeploymentState.CANARY,
            soak_seconds=settings.WAF_SOAK_SECONDS if soak_seconds is None else soak_seconds,
            requested_by=None if isinstance(user, str) else user)
        record_event(actor_of(user), "waf.deployment_started", obj=deployment,
                     after={"version": version.pk, "canary_group": canary_group.name,
                            "soak_seconds": deployment.soak_seconds},
                     summary=f"rollout of {version} started: canary {canary_group.name}")
        if enqueue:
            from waf_config.tasks import run_deployment as task

            transaction.on_commit(lambda: task.delay(deployment.pk))
    return deployment


def _advisory_lock(deployment_id: int) -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [zlib.crc32(b"waf-deployment") - 2**31, deployment_id])
        return bool(cur.fetchone()[0])


def _advisory_unlock(deployment_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [zlib.crc32(b"waf-deployment") - 2**31, deployment_id])


def run_deployment(deployment_id: int, *, ack_timeout: float | None = None, poll: float = 0.25) -> Deployment:
    """Carry a rollout to its end (deployed, rolled back or failed). Returns the deployment."""
    timeout = float(settings.WAF_ACK_TIMEOUT_SECONDS if ack_timeout is None else ack_timeout)
    if not _advisory_lock(deployment_id):
        return Deployment.objects.get(pk=deployment_id)  # another worker carries it
    try:
        deployment = Deployment.objects.select_related("version__rule_set", "canary_group").get(pk=deployment_id)
        if deployment.state == DeploymentState.CANARY:
            _canary(deployment, timeout)
        if deployment.state == DeploymentState.SOAKING:
            _soak(deployment, poll)
        if deployment.state == DeploymentState.FLEET:
            _fleet(deployment, timeout)
        return deployment
    finally:
        _advisory_unlock(deployment_id)


def _save(deployment: Deployment, **fields: Any) -> None:
    for k, v in fields.items():
        setattr(deployment, k, v)
    deployment.save(update_fields=list(fields))


def _canary(deployment: Deployment, timeout: float) -> None:
    version, group = deployment.version, deployment.canary_group
    assert group is not None
    with transaction.atomic():
        previous = current_version(version.rule_set.kind, group)
        prev_map = dict(deployment.previous)
        prev_map.setdefault(group.name, previous.pk if previous and previous.pk != version.pk else None)
        RuleSetVersion.objects.filter(pk=version.pk, state=VersionState.APPROVED).update(state=VersionState.CANARY)
        version.refresh_from_db(fields=["state"])
        rv = _point(group, version, deployment)
        _save(deployment, previous=prev_map, groups=[group.name],
              resource_versions={**deployment.resource_versions, group.name: rv.pk})
        record_event(actor_of("waf_config.run_deployment"), "waf.canary_pushed", obj=deployment,
                     after={"group": group.name, "resource_version": rv.pk},
                     summary=f"{version} pushed to canary group {group.name} as version {rv.pk}")
    acks = wait_for_acks([rv], timeout=timeout)
    if acks.rejected:
        errors = "; ".join(f"{i}: {e}" for i, e in acks.rejected[rv.pk].items())
        rollback_deployment(deployment, f"canary NACK: {errors}"[:2000])
    elif not acks.ok:
        rollback_deployment(deployment, f"canary did not ACK within {timeout:g}s: {acks.pending}")
    elif acks.instances == 0:
        rollback_deployment(deployment, f"no Gateway of canary group {group.name} is connected: nothing to learn")
    else:
        _save(deployment, state=DeploymentState.SOAKING, canary_acked_at=timezone.now())


def canary_instances(group: GatewayGroup) -> list[str]:
    """The instance ids of the group's Gateways as their credentials say (the verified identity the log intake
    tags requests with), never as any log field claims."""
    return sorted(set(GatewayCredential.objects.filter(group=group, revoked_at__isnull=True)
                      .values_list("name", flat=True)))


@dataclass(frozen=True)
class BlockRateCheck:
    instances: list[str]
    baseline: BlockCounts | None   # None: no block-rate source is registered (no log pipeline)
    current: BlockCounts | None
    spike: bool
    verdict: str                   # one sentence with the figures

    def figures(self) -> dict[str, Any]:
        return {"instances": self.instances, "spike": self.spike, "verdict": self.verdict,
                "baseline": None if self.baseline is None else [self.baseline.requests, self.baseline.blocked],
                "current": None if self.current is None else [self.current.requests, self.current.blocked]}


def judge_block_rate(baseline: BlockCounts, current: BlockCounts, *, ratio: float, min_delta: float,
                     min_requests: int) -> tuple[bool, str]:
    """A spike: the current refused share is above ``baseline × ratio`` and at least ``min_delta`` above the
    baseline, with both windows holding at least ``min_requests`` requests (a tiny sample proves nothing)."""
    figures = (f"{current.rate:.1%} of {current.requests} requests refused since the canary ACK "
               f"({current.blocked}) against {baseline.rate:.1%} of {baseline.requests} before the rollout "
               f"({baseline.blocked}); threshold x{ratio:g} and +{min_delta:.1%}")
    if baseline.requests < min_requests or current.requests < min_requests:
        return False, f"not judged (fewer than {min_requests} requests in a window): {figures}"
    spike = current.rate > baseline.rate * ratio and current.rate - baseline.rate >= min_delta
    return spike, ("block-rate spike: " if spike else "no block-rate spike: ") + figures


def check_block_rate(deployment: Deployment, now: datetime | None = None) -> BlockRateCheck:
    """The canary group's refused share since its ACK against the same instances' share before the rollout."""
    assert deployment.canary_group is not None and deployment.canary_acked_at is not None
    instances = canary_instances(deployment.canary_group)
    source = block_rate_source()
    if source is None:
        return BlockRateCheck(instances, None, None, False, "not judged: no block-rate source (log pipeline) "
                                                             "is registered")
    start = deployment.created_at
    baseline = source(instances, start - timedelta(seconds=settings.WAF_BLOCK_RATE_BASELINE_SECONDS), start)
    current = source(instances, deployment.canary_acked_at, now or timezone.now())
    spike, verdict = judge_block_rate(baseline, current, ratio=settings.WAF_BLOCK_RATE_SPIKE_RATIO,
                                      min_delta=settings.WAF_BLOCK_RATE_MIN_DELTA,
                                      min_requests=settings.WAF_BLOCK_RATE_MIN_REQUESTS)
    return BlockRateCheck(instances, baseline, current, spike, verdict)


def _soak(deployment: Deployment, poll: float) -> None:
    assert deployment.canary_acked_at is not None and deployment.canary_group is not None
    rv = ResourceVersion.objects.defer("payload").get(pk=deployment.resource_versions[deployment.canary_group.name])
    end = deployment.canary_acked_at.timestamp() + deployment.soak_seconds
    next_check = 0.0
    while True:
        acks = wait_for_acks([rv], timeout=0)
        if acks.rejected:
            errors = "; ".join(f"{i}: {e}" for i, e in acks.rejected[rv.pk].items())
            rollback_deployment(deployment, f"canary NACK during the soak: {errors}"[:2000])
            return
        remaining = end - time.time()
        if remaining <= 0 or time.monotonic() >= next_check:
            check = check_block_rate(deployment)
            next_check = time.monotonic() + settings.WAF_BLOCK_RATE_CHECK_SECONDS
            if check.spike:
                group = deployment.canary_group.name
                rollback_deployment(deployment, f"canary group {group} ({', '.join(check.instances)}): "
                                                f"{check.verdict}"[:2000], figures=check.figures())
                return
        if remaining <= 0:
            break
        time.sleep(min(poll, remaining))
    with transaction.atomic():
        _save(deployment, state=DeploymentState.FLEET, fleet_started_at=timezone.now())
        record_event(actor_of("waf_config.run_deployment"), "waf.soak_passed", obj=deployment,
                     after={"soak_seconds": deployment.soak_seconds, "block_rate": check.figures()},
                     summary=f"{deployment.version} soaked on {deployment.canary_group.name}: no NACK; "
                             f"{check.verdict}"[:500])


def _fleet(deployment: Deployment, timeout: float) -> None:
    version = deployment.version
    kind = version.rule_set.kind
    groups = list(GatewayGroup.objects.order_by("name"))
    pushed = []
    with transaction.atomic():
        prev_map = dict(deployment.previous)
        rvs = dict(deployment.resource_versions)
        for group in groups:
            if group.name not in prev_map:
                previous = current_version(kind, group)
                prev_map[group.name] = previous.pk if previous and previous.pk != version.pk else None
            rv = _point(group, version, deployment)
            rvs[group.name] = rv.pk
            pushed.append(rv)
        _save(deployment, previous=prev_map, resource_versions=rvs, groups=[g.name for g in groups])
        record_event(actor_of("waf_config.run_deployment"), "waf.fleet_pushed", obj=deployment,
                     after={"groups": [g.name for g in groups]},
                     summary=f"{version} pushed to {len(groups)} groups")
    acks = wait_for_acks(pushed, timeout=timeout)
    if acks.rejected:
        errors = "; ".join(f"{i}: {e}" for per in acks.rejected.values() for i, e in per.items())
        rollback_deployment(deployment, f"fleet NACK: {errors}"[:2000])
        return
    if not acks.ok:
        rollback_deployment(deployment, f"the fleet did not ACK within {timeout:g}s: {acks.pending}")
        return
    with transaction.atomic():
        RuleSetVersion.objects.filter(pk=version.pk).update(state=VersionState.DEPLOYED)
        version.state = VersionState.DEPLOYED
        _save(deployment, state=DeploymentState.DEPLOYED, finished_at=timezone.now(),
              outcome=f"deployed to {len(groups)} groups, {acks.instances} Gateways ACKed")
        record_event(actor_of("waf_config.run_deployment"), "waf.deployed", obj=version,
                     after={"deployment": deployment.pk, "groups": [g.name for g in groups],
                            "instances": acks.instances},
                     summary=f"{version} deployed to every group")


def rollback_deployment(deployment: Deployment, reason: str, actor: Any = "waf_config.run_deployment", *,
                        figures: dict[str, Any] | None = None) -> None:
    """Point every group this rollout touched back at what it ran before, and publish (automatic or manual)."""
    version = deployment.version
    with transaction.atomic():
        restored: dict[str, int | None] = {}
        for name, previous_id in deployment.previous.items():
            group = GatewayGroup.objects.filter(name=name).first()
            if group is None:
                continue
            if previous_id is None:
                # nothing older to return to: stop serving the version (a Gateway keeps running its own file)
                GroupVersion.objects.filter(group=group, kind=version.rule_set.kind, version=version).delete()
                restored[name] = None
                continue
            previous = RuleSetVersion.objects.get(pk=previous_id)
            if previous.state not in SERVABLE_STATES:  # it runs again, so it is deployed again
                RuleSetVersion.objects.filter(pk=previous.pk).update(state=VersionState.DEPLOYED)
                previous.state = VersionState.DEPLOYED
            restored[name] = _point(group, previous, deployment).pk
        RuleSetVersion.objects.filter(pk=version.pk).update(state=VersionState.ROLLED_BACK)
        version.state = VersionState.ROLLED_BACK
        _save(deployment, state=DeploymentState.ROLLED_BACK, finished_at=timezone.now(), outcome=reason)
        record_event(actor_of(actor), "waf.rolled_back", obj=deployment,
                     after={"version": version.pk, "reason": reason[:2000], "restored": restored,
                            **({"block_rate": figures} if figures is not None else {})},
                     summary=f"{version} rolled back: {reason}"[:500])


def rollback_to(version: RuleSetVersion, user: Any, groups: list[GatewayGroup] | None = None, *,
                reason: str = "manual rollback") -> Deployment:
    """Point groups (default: all) at an older deployed version again: its content is published anew."""
    require_perm(user, DEPLOY_PERMISSION, "roll back")
    if version.state != VersionState.DEPLOYED and not version.deployments.filter(
            state=DeploymentState.DEPLOYED).exists():
        raise WafError(f"{version} was never deployed; roll back only to a version that ran on the fleet")
    if version.validation_status != ValidationStatus.VALID:
        raise WafError(f"{version} has not passed validation")
    kind = version.rule_set.kind
    targets = groups if groups is not None else list(GatewayGroup.objects.order_by("name"))
    with transaction.atomic():
        replaced = {g.name: current_version(kind, g) for g in targets}
        RuleSetVersion.objects.filter(pk=version.pk).update(state=VersionState.DEPLOYED)
        version.state = VersionState.DEPLOYED
        deployment = Deployment.objects.create(
            version=version, state=DeploymentState.DEPLOYED, groups=[g.name for g in targets],
            previous={n: (v.pk if v else None) for n, v in replaced.items()},
            requested_by=None if isinstance(user, str) else user, outcome=reason)
        rvs = {g.name: _point(g, version, deployment).pk for g in targets}
        for old in replaced.values():
            if old is not None and old.pk != version.pk and old.state in SERVABLE_STATES:
                RuleSetVersion.objects.filter(pk=old.pk).update(state=VersionState.ROLLED_BACK)
        _save(deployment, resource_versions=rvs, finished_at=timezone.now())
        record_event(actor_of(user), "waf.rolled_back_manually", obj=deployment,
                     after={"version": version.pk, "groups": list(rvs), "reason": reason[:500],
                            "replaced": {n: (v.pk if v else None) for n, v in replaced.items()}},
                     summary=f"groups {', '.join(rvs)} pointed at {version} again: {reason}"[:500])
    return deployment
