import subprocess
import sys

import pytest

from worker_project.env import ImproperlyConfiguredEnv, parse_database_url


def run_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='worker_project.settings'; django.setup()"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_secret_key(tmp_path):
    result = run_settings({"WORKER_ENV": "production", "PATH": "/usr/bin:/bin",
                           "FIELD_ENCRYPTION_KEYS": "x" * 43 + "=", "ALLOWED_HOSTS": "gw.example"})
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when WORKER_ENV=production" in result.stderr


def test_production_starts_with_secret_key_from_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("a-real-secret\n")
    result = run_settings({"WORKER_ENV": "production", "PATH": "/usr/bin:/bin", "SECRET_KEY_FILE": str(secret),
                           "FIELD_ENCRYPTION_KEYS": "x" * 43 + "=", "ALLOWED_HOSTS": "gw.example"})
    assert result.returncode == 0, result.stderr


def test_bad_boolean_names_the_variable():
    result = run_settings({"PATH": "/usr/bin:/bin", "DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_database_url_forms(tmp_path):
    assert parse_database_url("sqlite:///var/x.db", tmp_path)["NAME"] == str(tmp_path / "var/x.db")
    assert parse_database_url("sqlite:////abs/x.db", tmp_path)["NAME"] == "/abs/x.db"
    pg = parse_database_url("postgres://u:p%40ss@db:5433/gw?sslmode=require", tmp_path)
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == ("u", "p@ss", "db", "5433", "gw")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    with pytest.raises(ImproperlyConfiguredEnv, match="unsupported scheme 'mysql'"):
        parse_database_url("mysql://x/y", tmp_path)
