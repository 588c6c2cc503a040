"""Shared by the certificate management commands: check a form, turn its errors into one clear CommandError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.core.management.base import CommandError


def checked_instance(form: forms.ModelForm, what: str) -> Any:
    """The form's unsaved instance (a catalog service saves and audits it), or one clear CommandError."""
    if not form.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(str(e) for e in errors)}" if field != "__all__" else " ".join(str(e) for e in errors)
            for field, errors in form.errors.items())
        raise CommandError(f"{what} not saved: {problems}")
    return form.save(commit=False)


def read_file(path: str | None, what: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read {what} from {path}: {exc}") from exc


def read_pem_file(path: str | None, option: str, what: str) -> str:
    """The PEM certificates in ``path`` ("" when no path is given); an empty or non-PEM file is refused by name,
    since an empty value would silently mean "the default" (e.g. a ``curl > roots.pem`` that got nothing)."""
    from certificates.forms import pem_problem

    text = read_file(path, what)
    if path and (problem := pem_problem(text)):
        raise CommandError(f"{option} {path}: {problem}; expected {what} as PEM certificates")
    return text
