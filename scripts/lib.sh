# Shared helpers for scripts/run.sh and scripts/test.sh (sourced, not run).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=""
apt_install() {
  # apt_install PACKAGE... : install Debian packages (only as root; otherwise say what is missing).
  if ! is_root; then
    log "missing: $* (install them with apt-get, or run as root)"; return 1
  fi
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

ensure_python() {
  if ! command -v python3 >/dev/null; then apt_install python3 python3-venv; fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
}

ensure_venv() {
  # Create the virtualenv and install the project with pinned constraints (skipped when unchanged).
  ensure_python
  [ -x "$PY" ] || { log "creating virtualenv in $VENV"; python3 -m venv "$VENV"; }
  local stamp="$VENV/.controlplane-installed"
  local want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python dependencies (constraints.txt)"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
}

pg_answers() { pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" 2>/dev/null; }

ensure_postgres() {
  command -v pg_isready >/dev/null || apt_install postgresql-client
  pg_answers && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    # A fresh cluster: let local TCP clients in without a password, like the CI machines.
    local hba
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)"
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 1 30); do pg_answers && return 0; sleep 1; done
  log "PostgreSQL does not answer on ${PGHOST:-127.0.0.1}:${PGPORT:-5432}"; return 1
}

redis_answers() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  redis_answers && return 0
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do redis_answers && return 0; sleep 0.5; done
  log "Redis does not answer on 127.0.0.1:6379"; return 1
}

# Tools the test suite drives for real; each line: command package.
TEST_TOOLS="
docker-compose docker-compose
nginx nginx-light
pg_dump postgresql-client
pg_restore postgresql-client
tar tar
promtool prometheus
zstd zstd
chromium chromium
prometheus prometheus
"

ensure_test_tools() {
  local missing=()
  while read -r cmd pkg; do
    [ -n "$cmd" ] || continue
    command -v "$cmd" >/dev/null || missing+=("$pkg")
  done <<< "$TEST_TOOLS"
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}
