# One image for every role (web, worker, beat, grpc, flower, migrate): the command picks the role.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install .

FROM python:3.11-slim-bookworm
# tini: PID 1 that forwards signals and reaps children (celery prefork, gunicorn); openssl: for operators.
RUN apt-get update && apt-get install -y --no-install-recommends tini openssl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin worker
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /src/manage.py /src/Procfile ./
COPY --from=build /src/scripts ./scripts
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=worker_project.settings \
    WORKER_ENV=production \
    WORKER_VAR_DIR=/var/lib/gateway-worker \
    LOG_FORMAT=json
RUN mkdir -p /var/lib/gateway-worker && chown worker /var/lib/gateway-worker \
    && SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=bXlfYnVpbGRfb25seV9rZXlfMzJfYnl0ZXNfbG9uZ18= ALLOWED_HOSTS=x \
       DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --noinput -v0 \
    && chown -R worker /var/lib/gateway-worker
USER worker
EXPOSE 8000 50051 5555
ENTRYPOINT ["tini", "--"]
# Default role: web. Others: see docker-compose.yml (celery worker/beat/flower, manage.py run_grpc, migrate).
# gunicorn_conf: Prometheus multiprocess mode, so /metrics counts every gunicorn worker's requests.
CMD ["gunicorn", "-c", "python:worker_project.gunicorn_conf", "worker_project.wsgi:application", \
     "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--access-logfile", "-", "--forwarded-allow-ips", "*"]
