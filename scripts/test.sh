#!/usr/bin/env bash
# Set everything up and run the whole suite against PostgreSQL and Redis.
# Exits non-zero on any failure. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
ensure_redis
ensure_test_tools
ensure_venv

export CONTROLPLANE_TESTING=1
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/controlplane}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/1}"
export CELERY_BROKER_URL="${TEST_CELERY_BROKER_URL:-$REDIS_URL}"
export LOG_LEVEL="${LOG_LEVEL:-WARNING}"

log "ruff"
"$VENV/bin/ruff" check .
log "mypy"
"$VENV/bin/mypy" .
log "migrations are up to date"
"$PY" manage.py makemigrations --check --dry-run >/dev/null
log "pytest (PostgreSQL at ${DATABASE_URL##*@}, Redis at ${REDIS_URL##*//})"
"$VENV/bin/pytest" "$@"
