# Shared by scripts/up and scripts/test: install what is missing, start what is not running.
# Debian/Ubuntu with Python 3.11+; run as root or with sudo available.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

redact_url() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }  # scheme://user:***@host/...

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_updated=""
ensure_packages() {  # ensure_packages CMD:PKG ...  (installs PKG when CMD is not found)
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing from Debian packages: ${missing[*]}"
  if [ -z "$_apt_updated" ]; then as_root apt-get update -qq; _apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

redis_up() { python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(); s.settimeout(1)
try:
    s.connect((host, int(port))); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

ensure_redis() {
  if redis_up 127.0.0.1:6379; then return 0; fi
  ensure_packages redis-server:redis-server
  log "starting redis-server on 127.0.0.1:6379"
  mkdir -p "$ROOT/var"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$ROOT/var" --logfile "$ROOT/var/redis.log"
  for _ in $(seq 50); do redis_up 127.0.0.1:6379 && return 0; sleep 0.1; done
  echo "redis-server did not come up; see $ROOT/var/redis.log" >&2; return 1
}

pg_up() { python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1',5432)))"; }

ensure_postgres() {
  if pg_up; then return 0; fi
  ensure_packages pg_ctlcluster:postgresql psql:postgresql-client
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  if [ -z "$version" ]; then echo "postgresql installed but no cluster found under /etc/postgresql" >&2; return 1; fi
  log "starting PostgreSQL $version on 127.0.0.1:5432"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  pg_up || { echo "PostgreSQL did not come up" >&2; return 1; }
  # A fresh Debian cluster uses password auth over TCP: give the postgres role the password the URL uses.
  as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV" || { ensure_packages "python3-venv:python3-venv"; python3 -m venv "$VENV"; }
  fi
  local stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing gateway-worker and its dev tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    # The notice silenced here only says the editable install maps two roots (. and proto/), which is on purpose.
    PYTHONWARNINGS="ignore:Editable installation" "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
    touch "$stamp"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
}
