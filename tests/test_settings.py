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


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def settings_variables() -> set[str]:
    import re

    source = (ROOT / "worker_project" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|int|float|list)\(\s*"([A-Z0-9_]+)"', source))


def test_every_setting_is_documented():
    names = settings_variables()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "SENTRY_DSN"} <= names
    doc = (ROOT / "docs" / "configuration.md").read_text()
    undocumented = sorted(name for name in names if f"`{name}`" not in doc)
    assert undocumented == [], f"add these to docs/configuration.md: {undocumented}"


def test_compose_runs_every_role_from_one_image_on_postgres_and_redis():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "web", "worker", "beat", "grpc", "flower"}
    app_services = {name: s for name, s in services.items() if name not in ("postgres", "redis")}
    assert {s["image"] for s in app_services.values()} == {"gateway-worker:latest"}
    assert all(s["build"] == "." for s in app_services.values())
    for name, service in app_services.items():
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://redis:")
        assert env["WORKER_ENV"] == "production"
        unknown = set(env) - settings_variables() - {"DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD",
                                                     "DJANGO_SUPERUSER_EMAIL"}
        assert unknown == set(), f"{name} sets variables settings does not read: {unknown}"
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "setup_schedules" in " ".join(services["migrate"]["command"])
    assert "DatabaseScheduler" in " ".join(services["beat"]["command"])
    assert_every_queue_consumed_once({n: " ".join(services[n]["command"]) for n in ("worker", "certworker")})
    assert "--basic-auth" in " ".join(services["flower"]["command"])


def test_procfile_and_helm_chart_cover_every_role():
    import yaml

    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(procfile) == {"web", "worker", "certworker", "beat", "grpc", "flower"}
    assert_every_queue_consumed_once({n: procfile[n] for n in ("worker", "certworker")})
    assert "django_celery_beat.schedulers:DatabaseScheduler" in procfile["beat"]

    chart = ROOT / "deploy" / "helm" / "gateway-worker"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == "gateway-worker"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert set(values["config"]) <= settings_variables()
    assert set(values["secrets"]) - {"existingSecret"} <= settings_variables()
    templates = {p.name for p in (chart / "templates").iterdir()}
    assert templates >= {"_helpers.tpl", "configmap.yaml", "secret.yaml", "migrate-job.yaml", "web.yaml",
                         "worker.yaml", "beat.yaml", "grpc.yaml", "flower.yaml", "service.yaml"}
    assert "replicas: 1" in (chart / "templates" / "beat.yaml").read_text()
    assert_every_queue_consumed_once({w["name"]: f"-Q {w['queues']} -P {w['pool']}" for w in values["workers"]})


def assert_every_queue_consumed_once(commands: dict[str, str]) -> None:
    """Each Celery queue has exactly one consumer role, and certificates runs on a threads pool."""
    import re

    from worker_project.celery import QUEUES

    consumers: dict[str, list[str]] = {}
    for role, command in commands.items():
        queues = re.search(r"-Q[ ,]+\"?([\w,]+)", command)
        assert queues, f"{role} names no queues: {command}"
        for queue in queues.group(1).split(","):
            consumers.setdefault(queue, []).append(role)
    assert {q: len(r) for q, r in consumers.items()} == dict.fromkeys(QUEUES, 1), consumers
    cert_role = consumers["certificates"][0]
    assert re.search(r"-P[ ,]+\"?threads", commands[cert_role]), commands[cert_role]
