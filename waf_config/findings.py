"""What validation and import report: findings with a severity, the rule id and the field they concern."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Severity(StrEnum):
    ERROR = "error"  # the Gateway would reject the file, or the rule can never behave as written
    WARNING = "warning"  # loads, but does something other than it seems to (or was normalised on import)


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str  # short and stable, for tests and filters: "missing-key", "regex-dialect", ...
    message: str  # a whole sentence naming the rule id and the field
    rule_id: str | None = None
    field: str | None = None  # path inside the document, e.g. "rules[3].action.metadata"
    line: int | None = None  # 1-based line in the source text, when known

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.severity.value}: {self.message}{where}"


@dataclass(slots=True)
class Report:
    """An ordered list of findings; ``ok`` when none is an error."""

    findings: list[Finding] = field(default_factory=list)

    def add(
        self, severity: Severity, code: str, message: str, *, rule_id: str | None = None,
        field: str | None = None, line: int | None = None,
    ) -> None:
        self.findings.append(Finding(severity, code, message, rule_id, field, line))

    def error(self, code: str, message: str, **where: Any) -> None:
        self.add(Severity.ERROR, code, message, **where)

    def warning(self, code: str, message: str, **where: Any) -> None:
        self.add(Severity.WARNING, code, message, **where)

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.findings]


class FormatError(ValueError):
    """A document that cannot be imported at all; ``findings`` says every reason found."""

    def __init__(self, what: str, findings: list[Finding]) -> None:
        self.findings = findings
        errors = [f for f in findings if f.severity is Severity.ERROR]
        lines = "; ".join(str(f) for f in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{what}: {lines}{more}")


@dataclass(frozen=True, slots=True)
class Imported(Generic[T]):
    """An imported document and what the import found (warnings for what it normalised)."""

    value: T
    report: Report
