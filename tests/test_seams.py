"""The doors between apps hold: certificates reaches other apps only through certificates/services/seams.py,
and only integrations.services writes Notification rows. A bypass added anywhere makes this fail."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OTHER_APPS = {"audit", "gateways", "integrations", "waf_config", "logpipeline", "analytics"}


def _sources(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_certificates_reaches_other_apps_only_through_its_seam() -> None:
    seam = ROOT / "certificates" / "services" / "seams.py"
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] in OTHER_APPS)
        for path in _sources("certificates") if path != seam
    }
    assert {k: v for k, v in offenders.items() if v} == {}


WRITES_NOTIFICATION = re.compile(
    r"(?<!class )\bNotification\(|\bNotification\.objects\.(create|bulk_create|get_or_create|update_or_create)\(")


def test_only_the_integrations_service_writes_notifications() -> None:
    writer = ROOT / "integrations" / "services.py"
    offenders = [str(p.relative_to(ROOT)) for app in sorted(OTHER_APPS | {"certificates", "worker_project"})
                 if (ROOT / app).is_dir() for p in _sources(app)
                 if p != writer and WRITES_NOTIFICATION.search(p.read_text())]
    assert offenders == []
