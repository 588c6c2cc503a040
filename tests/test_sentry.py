"""Sentry's real client pipeline (integrations, serializer, before_send) with a transport that keeps the
envelope in memory: what would leave the process carries no PEM block, key or token."""

from __future__ import annotations

import logging
import subprocess
import sys

import sentry_sdk
from sentry_sdk.transport import Transport

from worker_project.sentry import sentry_options

PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7sEcReTkEyPEMbodyX"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"
TOKEN = "tok_live_8f7d6c5b4a39281706f5e4d3"
DSN = "https://public@sentry.invalid/1"


class CapturingTransport(Transport):
    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[bytes] = []

    def capture_envelope(self, envelope) -> None:  # noqa: ANN001
        self.envelopes.append(envelope.serialize())


def renew(blob: str, api_key: str) -> None:
    key_material = blob  # frame vars: a PEM under an innocent name
    raise RuntimeError(f"ACME rejected the CSR for {key_material} with authorization=Bearer {api_key}")


def capture(scrubbed: bool) -> bytes:
    options = sentry_options(DSN, environment="test", traces_sample_rate=0.0)
    if not scrubbed:
        options.pop("before_send")
        options.pop("before_breadcrumb")
    transport = CapturingTransport()
    client = sentry_sdk.Client(**options, transport=transport)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(client)
        scope.set_extra("certificate", {"name": "edge", "note": f"stored {PEM}", "token": TOKEN})
        scope.set_extra("headers", f"Authorization: Bearer {TOKEN}")
        logging.getLogger("tests.sentry").warning("loaded %s", PEM)  # a breadcrumb
        sentry_sdk.capture_message(f"private key leaked? {PEM} password={TOKEN}")
        try:
            renew(PEM, TOKEN)
        except RuntimeError:
            sentry_sdk.capture_exception()
    client.flush(timeout=5)
    client.close()
    return b"\n".join(transport.envelopes)


def test_events_leave_with_pem_blocks_keys_and_tokens_scrubbed() -> None:
    raw = capture(scrubbed=True).decode()
    assert raw.count('"type":"event"') == 2  # the message and the exception both left
    assert "ACME rejected the CSR" in raw and "private key leaked?" in raw  # content still useful
    assert '"vars"' in raw  # frame variables were sent...
    assert PEM_BODY not in raw and "BEGIN PRIVATE KEY" not in raw  # ...without the key
    assert TOKEN not in raw
    assert "[redacted PEM block]" in raw and "[redacted]" in raw


def test_without_scrubbing_the_same_events_would_leak() -> None:
    """The control: the material really reaches the envelope when before_send is absent."""
    raw = capture(scrubbed=False).decode()
    assert PEM_BODY in raw and TOKEN in raw


def test_sentry_is_off_without_dsn() -> None:
    code = ("import os, django; os.environ['DJANGO_SETTINGS_MODULE']='worker_project.settings'; django.setup(); "
            "import sentry_sdk; print(sentry_sdk.get_client().is_active())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "SENTRY_DSN": ""})
    assert result.stdout.strip() == "False", result.stderr
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "SENTRY_DSN": DSN})
    assert result.stdout.strip() == "True", result.stderr
