"""What goes over the wire for each channel kind, and the reference verifier for signed webhooks.

Each sender takes a ``Notification`` (with its channel loaded) and returns the HTTP status it got, or raises
``TransientSendError`` (worth a retry: network trouble, 429, 5xx) or ``PermanentSendError`` (never retried: a
4xx, a channel without its secret). Error texts never contain a secret: a Slack URL carries its token, so no
URL is ever put in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from integrations.models import ChannelKind, Notification, NotificationChannel

SIGNATURE_HEADER = "X-Gateway-Worker-Signature"
TIMESTAMP_HEADER = "X-Gateway-Worker-Timestamp"
DELIVERY_HEADER = "X-Gateway-Worker-Delivery"  # the notification's id: receivers may dedupe on it
SIGNATURE_VERSION = "v1"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Events v2 severities; ours map onto them.
PAGERDUTY_SEVERITY = {"info": "info", "low": "warning", "medium": "warning", "high": "error", "critical": "critical"}
SLACK_EMOJI = {"info": ":information_source:", "low": ":large_blue_circle:", "medium": ":warning:",
               "high": ":rotating_light:", "critical": ":fire:"}


class SendError(Exception):
    pass


class TransientSendError(SendError):
    """Try again later (with backoff)."""


class PermanentSendError(SendError):
    """Retrying cannot help: the receiver refused the request or the channel is misconfigured."""


class WebhookVerificationError(Exception):
    """A webhook that must not be trusted: bad or missing signature, or a timestamp outside the tolerance."""


# ------------------------------------------------------------------------------------------- signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``: the timestamp is signed, so it cannot be moved."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def verify_webhook(secret: str, body: bytes, timestamp: str | None, signature: str | None, *,
                   tolerance_seconds: int = 300, now: float | None = None) -> None:
    """The reference receiver check: raises ``WebhookVerificationError`` unless ``signature`` is ours over
    ``timestamp`` and ``body`` and the timestamp is within ``tolerance_seconds`` of now (a replay of an old
    request, even with its valid signature, is refused). Receivers should also dedupe on the delivery id."""
    if not timestamp or not signature:
        raise WebhookVerificationError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not a unix timestamp") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        raise WebhookVerificationError(f"timestamp {sent_at} is {int(current - sent_at)}s away from now "
                                       f"(tolerance {tolerance_seconds}s): a replay or a skewed clock")
    expected = sign(secret, sent_at, body)
    offered = [part.strip() for part in signature.split(",")]  # several during a secret rotation
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookVerificationError("signature does not match the body and timestamp")


# ------------------------------------------------------------------------------------------- payloads


def event_document(n: Notification) -> dict[str, Any]:
    """The generic JSON event (webhook body)."""
    return {"id": n.pk, "kind": n.event_kind, "severity": n.severity, "action": n.event_action,
            "title": n.title, "dedup_key": n.dedupe_key, "incident_key": n.incident_key,
            "created_at": n.created_at.isoformat(), "detail": n.body}


def slack_payload(n: Notification) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` (the fallback every Slack-compatible receiver shows) and blocks."""
    headline = f"{SLACK_EMOJI.get(n.severity, '')} [{n.severity.upper()}] {n.title}".strip()
    detail = {k: v for k, v in n.body.items() if k != "text" and v not in (None, "", [])}
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v if not isinstance(v, list) else ', '.join(map(str, v))}"}
              for k, v in list(detail.items())[:10]]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}}]
    if n.body.get("text"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": str(n.body["text"])[:2900]}})
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{n.event_kind} · {n.event_action} · {n.incident_key}"}]})
    return {"text": headline, "blocks": blocks}


def pagerduty_payload(n: Notification, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event. ``dedup_key`` is the incident key, so a resolve closes what its trigger opened;
    acknowledge and resolve carry no ``payload`` (the API ignores it for them)."""
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": n.event_action,
                             "dedup_key": n.incident_key or n.dedupe_key}
    if n.event_action == "trigger":
        event["payload"] = {
            "summary": n.title[:1024],
            "source": settings.NOTIFY_SOURCE,
            "severity": PAGERDUTY_SEVERITY.get(n.severity, "warning"),
            "timestamp": n.created_at.isoformat(),
            "component": n.event_kind.split(".")[0],
            "class": n.event_kind,
            "custom_details": n.body,
        }
        event["client"] = "gateway-worker"
    return event


# ------------------------------------------------------------------------------------------- transport


def _post_json(url: str, document: dict[str, Any], headers: dict[str, str] | None = None, *,
               body: bytes | None = None) -> int:
    data = body if body is not None else json.dumps(document).encode()
    request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310 — http(s) checked below
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "gateway-worker-notify/1", **(headers or {})})
    if not url.startswith(("http://", "https://")):
        raise PermanentSendError("the channel's URL is not http(s)")
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_HTTP_TIMEOUT) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientSendError(f"receiver answered HTTP {exc.code}") from None
        raise PermanentSendError(f"receiver refused with HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientSendError(f"cannot reach the receiver: {type(reason).__name__}: {reason}"[:300]) from None


def send_webhook(n: Notification) -> int:
    channel = n.channel
    if not channel.secret:
        raise PermanentSendError("webhook channel has no signing secret; set one in admin")
    body = json.dumps(event_document(n), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(channel.secret, timestamp, body),
               DELIVERY_HEADER: str(n.pk)}
    return _post_json(channel.target, {}, headers, body=body)


def send_slack(n: Notification) -> int:
    # A Slack webhook URL is itself the credential: kept in the encrypted secret when given.
    return _post_json(n.channel.secret or n.channel.target, slack_payload(n))


def send_pagerduty(n: Notification) -> int:
    channel = n.channel
    if not channel.secret:
        raise PermanentSendError("PagerDuty channel has no routing key; set one in admin")
    url = channel.target if channel.target.startswith("http") else PAGERDUTY_EVENTS_URL
    return _post_json(url, pagerduty_payload(n, channel.secret))


def send_email(n: Notification) -> int:
    channel = n.channel
    recipients = [a.strip() for a in channel.target.replace(";", ",").split(",") if a.strip()]
    if not recipients:
        raise PermanentSendError("email channel has no recipient address")
    connection = _email_connection(channel)
    lines = [str(n.body.get("text", ""))] if n.body.get("text") else []
    lines += [f"{k}: {v}" for k, v in n.body.items() if k != "text"]
    lines += ["", f"event: {n.event_kind} ({n.event_action}), severity {n.severity}, incident {n.incident_key}"]
    message = EmailMessage(subject=f"[{n.severity.upper()}] {n.title}", body="\n".join(lines),
                           from_email=channel.options.get("from") or settings.DEFAULT_FROM_EMAIL,
                           to=recipients, connection=connection,
                           headers={"X-Gateway-Worker-Event": n.event_kind, DELIVERY_HEADER: str(n.pk)})
    try:
        message.send(fail_silently=False)
    except (OSError, TimeoutError) as exc:  # smtplib errors are OSErrors
        raise TransientSendError(f"SMTP: {type(exc).__name__}: {exc}"[:300]) from None
    return 250


def _email_connection(channel: NotificationChannel) -> Any:
    """The project's email backend, or SMTP to the channel's own server (password from the encrypted secret)."""
    options = channel.options or {}
    if not options.get("smtp_host"):
        return get_connection(fail_silently=False)
    return get_connection("django.core.mail.backends.smtp.EmailBackend", fail_silently=False,
                          host=options["smtp_host"], port=int(options.get("smtp_port", 25)),
                          username=options.get("smtp_user") or None, password=channel.secret or None,
                          use_tls=bool(options.get("smtp_tls", False)), timeout=settings.NOTIFY_HTTP_TIMEOUT)


SENDERS = {ChannelKind.WEBHOOK: send_webhook, ChannelKind.SLACK: send_slack,
           ChannelKind.PAGERDUTY: send_pagerduty, ChannelKind.EMAIL: send_email}


def send(n: Notification) -> int:
    sender = SENDERS.get(n.channel.kind)  # type: ignore[call-overload]
    if sender is None:
        raise PermanentSendError(f"unknown channel kind {n.channel.kind!r}")
    return sender(n)
