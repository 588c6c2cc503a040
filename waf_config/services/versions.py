"""Versions: create (immutable), validate with the Gateway's own rules, replay against stored traffic, approval.

Lifecycle: draft -> validated -> replayed -> approved -> canary -> deployed, or rejected / rolled_back. Every step
is a conditional update of ``state`` (``UPDATE … WHERE state = <expected>``) so two workers or two clicks cannot
both move it, and every step is audited in the same transaction.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit import approvals
from audit.models import ApprovalRequest, ApprovalState
from audit.services import record_event
from waf_config.compiler import Policy, compile_policy
from waf_config.findings import FormatError, Report
from waf_config.formats import WafRuleSet, dump_waf_rules, load_waf_rules, read_waf_rules
from waf_config.gateway_config import WafSettings, dump_gateway_config, load_gateway_config, read_gateway_config
from waf_config.models import (
    ReplayRequest,
    ReplayRun,
    ReplayRunStatus,
    ReplaySet,
    RuleSet,
    RuleSetKind,
    RuleSetVersion,
    ValidationStatus,
    VersionState,
)
from waf_config.modsecurity import ModSecFile, load_modsecurity, read_modsecurity
from waf_config.replay import replay
from waf_config.traffic import Request
from waf_config.validation import validate_gateway_config, validate_modsecurity_file, validate_waf_rules_file

from .common import WafError, actor_of, require_perm

APPROVE_ACTION = "waf_config.approve_version"
APPROVE_PERMISSION = "waf_config.approve_rulesetversion"
AUTHOR_PERMISSION = "waf_config.add_rulesetversion"


def checksum(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def file_name(rule_set: RuleSet) -> str:
    if rule_set.kind == RuleSetKind.WAF_RULES:
        return "waf-rules.yaml"
    if rule_set.kind == RuleSetKind.GATEWAY_CONFIG:
        return "gateway.yaml"
    return f"{rule_set.name}.conf"


def validate_content(kind: str, content: str, name: str = "rules.conf") -> Report:
    """The library's validator for this kind of file (what the Gateway itself would reject is an error)."""
    if kind == RuleSetKind.WAF_RULES:
        return validate_waf_rules_file(content)
    if kind == RuleSetKind.GATEWAY_CONFIG:
        return validate_gateway_config(content)
    if kind == RuleSetKind.MODSECURITY:
        return validate_modsecurity_file(content, name)
    raise WafError(f"unknown rule-set kind {kind!r}")


def _move(version: RuleSetVersion, expected: tuple[str, ...], new: str, **fields: Any) -> bool:
    n = RuleSetVersion.objects.filter(pk=version.pk, state__in=expected).update(state=new, **fields)
    if n:
        version.state = new
        for k, v in fields.items():
            setattr(version, k, v)
    return bool(n)


def create_version(rule_set: RuleSet, content: str, author: Any, comment: str = "", *,
                   validate: bool = True) -> RuleSetVersion:
    """A new immutable version (parent: the newest one), validated at once unless ``validate=False``."""
    require_perm(author, AUTHOR_PERMISSION, "author a rule-set version")
    if not content.strip():
        raise WafError("a version needs content")
    with transaction.atomic():
        RuleSet.objects.select_for_update().get(pk=rule_set.pk)  # serializes numbering per rule set
        last = rule_set.versions.aggregate(n=Max("number"))["n"] or 0
        parent = rule_set.versions.filter(number=last).first()
        version = RuleSetVersion.objects.create(
            rule_set=rule_set, number=last + 1, parent=parent, content=content, checksum=checksum(content),
            author=None if isinstance(author, str) else author, comment=comment)
        record_event(actor_of(author), "waf.version_created", obj=version,
                     after={"rule_set": rule_set.name, "number": version.number, "checksum": version.checksum,
                            "parent": parent.pk if parent else None},
                     summary=f"{version} drafted")
    if validate:
        validate_version(version, author)
    return version


def validate_version(version: RuleSetVersion, actor: Any = "waf_config.validate_version") -> Report:
    """Validate the exact bytes; a failure rejects the version (with every finding stored and shown)."""
    report = validate_content(version.rule_set.kind, version.content, file_name(version.rule_set))
    status = ValidationStatus.VALID if report.ok else ValidationStatus.INVALID
    with transaction.atomic():
        new_state = VersionState.VALIDATED if report.ok else VersionState.REJECTED
        moved = _move(version, (VersionState.DRAFT,), new_state, validation_status=status,
                      validation_errors=report.to_list(), validated_at=timezone.now())
        if moved:
            record_event(actor_of(actor), "waf.version_validated", obj=version,
                         after={"ok": report.ok, "errors": len(report.errors), "warnings": len(report.warnings),
                                "first_errors": [f.message for f in report.errors[:5]]},
                         summary=f"{version} {'passed' if report.ok else 'failed'} validation")
    return report


def import_version(rule_set: RuleSet, text: str, author: Any, source: str = "") -> tuple[RuleSetVersion, Report]:
    """The Gateway's own file as a new version, normalised into what its loader accepts.

    ``waf-rules.yaml`` and ``gateway.yaml`` are read leniently and written back as export does: what has one meaning
    is normalised (a missing ``metadata`` map added, ``"30s"`` written as ``{secs, nanos}``, documented defaults
    filled) and each change is a warning in the returned report. A ModSecurity file is taken byte for byte: a
    construct the Gateway runs differently from how it reads (``chain``, an unsupported operator) has no faithful
    rewrite, so the version's own validation refuses it with the reason. A file that cannot be read at all raises
    ``WafError`` and creates nothing.
    """
    try:
        if rule_set.kind == RuleSetKind.WAF_RULES:
            rules = load_waf_rules(text)
            content, report = dump_waf_rules(rules.value), rules.report
        elif rule_set.kind == RuleSetKind.GATEWAY_CONFIG:
            config = load_gateway_config(text)
            content, report = dump_gateway_config(config.value), config.report
        else:
            content, report = text, load_modsecurity(text, file_name(rule_set)).report
    except FormatError as exc:
        raise WafError(f"{source or 'the file'} cannot be imported as {rule_set.kind}: {exc}") from None
    changed = "normalised" if content != text else "unchanged"
    comment = f"imported from {source or 'a file'} ({changed}; {len(report.warnings)} import warnings)"
    return create_version(rule_set, content, author, comment), report


# ------------------------------------------------------------------------------------------------ replay


def _policy(kind: str, content: str, name: str, *, rules: WafRuleSet | None = None,
            settings: WafSettings | None = None, modsecurity: tuple[ModSecFile, ...] = ()) -> Policy:
    """The policy a group would run with this version in place: the rest (rules, settings, the SecRule file) is
    what the group runs now."""
    empty = WafRuleSet("1.0", ())
    if kind == RuleSetKind.WAF_RULES:
        parsed, _ = read_waf_rules(content, strict=True)
        if parsed is None:
            raise WafError("the rule file does not parse")
        return Policy(parsed, modsecurity, settings or WafSettings())
    if kind == RuleSetKind.GATEWAY_CONFIG:
        cfg, _ = read_gateway_config(content, strict=True)
        if cfg is None:
            raise WafError("gateway.yaml does not parse")
        return Policy(rules or empty, modsecurity, cfg.waf)
    file, _ = read_modsecurity(content, name, strict=True)
    base = settings or WafSettings()
    return Policy(rules or empty, (file,), WafSettings(
        base.enabled, base.max_request_size, base.rate_limiting, base.ip_whitelist, base.ip_blacklist,
        base.blocked_headers, base.blocked_user_agents, True))


def _live_context(group_name: str | None
                  ) -> tuple[WafRuleSet | None, WafSettings | None, tuple[ModSecFile, ...]]:
    """The rules, WAF settings and the Worker's SecRule file a group runs now (for replaying the other kinds)."""
    from .deployment import current_version

    rules = settings = None
    waf = current_version(RuleSetKind.WAF_RULES, group_name)
    if waf is not None:
        rules, _ = read_waf_rules(waf.content, strict=True)
    cfg = current_version(RuleSetKind.GATEWAY_CONFIG, group_name)
    if cfg is not None:
        parsed, _ = read_gateway_config(cfg.content, strict=True)
        settings = parsed.waf if parsed is not None else None
    modsec = current_version(RuleSetKind.MODSECURITY, group_name)
    files: tuple[ModSecFile, ...] = ()
    if modsec is not None:
        files = (read_modsecurity(modsec.content, file_name(modsec.rule_set), strict=True)[0],)
    return rules, settings, files


def baseline_for(version: RuleSetVersion) -> RuleSetVersion | None:
    """What this version would replace: the version of its kind the canary group runs (else any group)."""
    from django.conf import settings

    from .deployment import current_version

    return current_version(version.rule_set.kind, settings.WAF_CANARY_GROUP)


def _check_replayable(version: RuleSetVersion) -> None:
    if version.validation_status != ValidationStatus.VALID:
        raise WafError(f"{version} has not passed validation; it cannot be replayed")
    if version.state not in (VersionState.VALIDATED, VersionState.REPLAYED):
        raise WafError(f"{version} is {version.state}; only a validated version is replayed before approval")


def request_replay(version: RuleSetVersion, replay_set: ReplaySet, actor: Any = "waf_config.replay_version", *,
                   enqueue: bool = True) -> ReplayRun:
    """Queue a replay of the set against the version: a ``queued`` ReplayRun, carried out by the task
    ``run_replay`` (``enqueue``) or by ``execute_replay``. Asking again while one for the same version and set is
    queued or running returns that one."""
    _check_replayable(version)
    with transaction.atomic():
        RuleSetVersion.objects.select_for_update().filter(pk=version.pk).first()  # two requests at once: one run
        open_run = ReplayRun.objects.filter(version=version, replay_set=replay_set,
                                            status__in=(ReplayRunStatus.QUEUED, ReplayRunStatus.RUNNING)).first()
        if open_run is not None:
            return open_run
        run = ReplayRun.objects.create(version=version, replay_set=replay_set, status=ReplayRunStatus.QUEUED,
                                       requests_total=replay_set.request_count)
        if enqueue:
            from waf_config.tasks import run_replay

            record_event(actor_of(actor), "waf.replay_queued", obj=version,
                         after={"replay_run": run.pk, "replay_set": replay_set.name,
                                "requests": replay_set.request_count},
                         summary=f"replay of {version} on {replay_set.name} ({replay_set.request_count} requests) "
                                 "queued")
            transaction.on_commit(lambda: run_replay.delay(run.pk))
    return run


def _replay_lock(run_id: int, take: bool) -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cur:
        fn = "pg_try_advisory_lock" if take else "pg_advisory_unlock"
        cur.execute(f"SELECT {fn}(%s, %s)", [zlib.crc32(b"waf-replay") - 2**31, run_id])
        return bool(cur.fetchone()[0])


def _counted(requests: Iterator[Request], run_id: int, every: int) -> Iterator[Request]:
    """The requests, writing how many were replayed every ``every`` (what admin and the API show as progress)."""
    n = 0
    for request in requests:
        yield request
        n += 1
        if n % every == 0:
            ReplayRun.objects.filter(pk=run_id).update(requests_replayed=n)


def execute_replay(run_id: int, actor: Any = "waf_config.run_replay", *, samples_per_change: int = 20,
                   progress_every: int | None = None) -> ReplayRun:
    """Carry out a queued replay run. Safe to run again (a Celery redelivery): a finished run is returned as it
    is, a run left ``running`` by a dead worker starts over on the same row (one report, never two), and an
    advisory lock keeps two workers off one run."""
    from django.conf import settings

    if not _replay_lock(run_id, True):
        return ReplayRun.objects.get(pk=run_id)  # another worker carries it
    try:
        run = ReplayRun.objects.select_related("version__rule_set", "replay_set").get(pk=run_id)
        if run.status in (ReplayRunStatus.DONE, ReplayRunStatus.FAILED):
            return run
        version, replay_set = run.version, run.replay_set
        try:
            if replay_set is None:
                raise WafError("its replay set was deleted")
            _check_replayable(version)
            kind, name = version.rule_set.kind, file_name(version.rule_set)
            rules, wsettings, modsec = _live_context(settings.WAF_CANARY_GROUP)
            baseline = baseline_for(version)
            new = compile_policy(_policy(kind, version.content, name, rules=rules, settings=wsettings,
                                         modsecurity=modsec))
            old = compile_policy(_policy(kind, baseline.content, name, rules=rules, settings=wsettings,
                                         modsecurity=modsec)) if baseline is not None else None
        except WafError as exc:
            ReplayRun.objects.filter(pk=run.pk).update(status=ReplayRunStatus.FAILED, error=str(exc)[:2000],
                                                       finished_at=timezone.now())
            run.refresh_from_db()
            return run
        stored = ReplayRequest.objects.filter(replay_set=replay_set)
        ReplayRun.objects.filter(pk=run.pk).update(status=ReplayRunStatus.RUNNING, started_at=timezone.now(),
                                                   requests_total=stored.count(), requests_replayed=0, error="")
        requests = (Request.from_dict(data) for data in
                    stored.order_by("position").values_list("data", flat=True).iterator(chunk_size=2000))
        every = progress_every or settings.WAF_REPLAY_PROGRESS_EVERY
        try:
            report = replay(new, _counted(requests, run.pk, every), old, samples_per_change=samples_per_change)
        except (OperationalError, InterfaceError):
            raise  # the database went away: the task's retry starts the run over
        except Exception as exc:  # a bug or a bad stored request: failed, with the reason, never "running" forever
            ReplayRun.objects.filter(pk=run.pk).update(status=ReplayRunStatus.FAILED, finished_at=timezone.now(),
                                                       error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        with transaction.atomic():
            ReplayRun.objects.filter(pk=run.pk).update(
                status=ReplayRunStatus.DONE, baseline=baseline, requests_replayed=report.requests,
                newly_blocked=report.newly_blocked, newly_allowed=report.newly_allowed, report=report.to_dict(),
                finished_at=timezone.now())
            _move(version, (VersionState.VALIDATED,), VersionState.REPLAYED)
            record_event(actor_of(actor), "waf.version_replayed", obj=version,
                         after={"replay_run": run.pk, "replay_set": replay_set.name, "requests": report.requests,
                                "newly_blocked": report.newly_blocked, "newly_allowed": report.newly_allowed,
                                "baseline": baseline.pk if baseline else None},
                         summary=f"{version} replayed on {report.requests} requests of {replay_set.name}: "
                                 f"{report.newly_blocked} newly blocked, {report.newly_allowed} newly allowed")
        run.refresh_from_db()
        return run
    finally:
        _replay_lock(run_id, False)


def replay_version(version: RuleSetVersion, replay_set: ReplaySet, actor: Any = "waf_config.replay_version",
                   *, samples_per_change: int = 20) -> ReplayRun:
    """Replay the stored requests against the version and its baseline, here and now; the diff report is
    attached. (Large sets: ``request_replay``, carried out by the task.)"""
    run = request_replay(version, replay_set, actor, enqueue=False)
    run = execute_replay(run.pk, actor, samples_per_change=samples_per_change)
    version.refresh_from_db(fields=["state"])
    if run.status != ReplayRunStatus.DONE:
        raise WafError(f"the replay of {version} failed: {run.error or run.status}")
    return run


def replay_in_background(replay_set: ReplaySet) -> bool:
    """Whether admin and the API queue this set's replay as a task rather than run it in the request."""
    from django.conf import settings

    return replay_set.request_count > settings.WAF_REPLAY_INLINE_MAX_REQUESTS


# ------------------------------------------------------------------------------------------------ approval


def submit_for_approval(version: RuleSetVersion, user: Any, justification: str = "") -> ApprovalRequest:
    """Ask for a second person's approval; needs a passing validation and a replay report."""
    if version.validation_status != ValidationStatus.VALID:
        raise WafError(f"{version} has not passed validation; it cannot be submitted for approval")
    if version.state != VersionState.REPLAYED or not version.replays.filter(status=ReplayRunStatus.DONE).exists():
        raise WafError(f"{version} is {version.state}: replay it against stored traffic before asking for approval")
    return approvals.request_approval(version, APPROVE_ACTION, user, justification, permission=APPROVE_PERMISSION,
                                      summary=f"{version} ({version.rule_set.kind})")


def pending_approval(version: RuleSetVersion) -> ApprovalRequest | None:
    return approvals.pending_for(version, APPROVE_ACTION)


def approve_version(version: RuleSetVersion, user: Any, comment: str = "") -> ApprovalRequest:
    request = pending_approval(version)
    if request is None:
        raise WafError(f"{version} has no pending approval request (submit it first)")
    return approvals.approve(request, user, comment)


def reject_version(version: RuleSetVersion, user: Any, comment: str) -> ApprovalRequest:
    request = pending_approval(version)
    if request is None:
        raise WafError(f"{version} has no pending approval request")
    return approvals.reject(request, user, comment)


def on_approval_decided(request: ApprovalRequest, decision: str) -> None:
    """audit.approvals calls this inside the deciding transaction; raising refuses the decision."""
    version = RuleSetVersion.objects.select_for_update().filter(pk=request.subject_id).first()
    if version is None:
        raise approvals.ApprovalError("the version no longer exists")
    if decision == ApprovalState.APPROVED:
        if version.author_id is not None and version.author_id == request.decided_by_id:
            raise approvals.ApprovalError(f"{request.decided_by} authored {version} and cannot approve it: "
                                          "a second person must")
        if version.validation_status != ValidationStatus.VALID:
            raise approvals.ApprovalError(f"{version} has not passed validation")
        if not version.replays.filter(status=ReplayRunStatus.DONE).exists():
            raise approvals.ApprovalError(f"{version} has no finished replay report")
        if not _move(version, (VersionState.REPLAYED,), VersionState.APPROVED):
            raise approvals.ApprovalError(f"{version} is {version.state}, not waiting for approval")
    elif not _move(version, (VersionState.REPLAYED,), VersionState.REJECTED):
        raise approvals.ApprovalError(f"{version} is {version.state}, not waiting for approval")
    record_event(actor_of(request.decided_by), f"waf.version_{decision}", obj=version,
                 after={"approval_request": request.pk, "comment": request.comment[:500]},
                 summary=f"{version} {decision} by {request.decided_by}")


def register() -> None:
    approvals.register_decision_handler(APPROVE_ACTION, on_approval_decided)
