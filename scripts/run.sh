#!/usr/bin/env bash
# Set everything up and run the control plane: web, Celery worker and Celery beat.
# Embedded defaults (SQLite in WAL mode, filesystem broker) unless DATABASE_URL /
# CELERY_BROKER_URL are set. Ctrl-C stops every process started here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_venv
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
export LOG_FORMAT="${LOG_FORMAT:-console}"

log "migrating the database (${DATABASE_URL:-embedded SQLite})"
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py collectstatic --noinput -v0
"$PY" manage.py bootstrap

pids=()
stop() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$VENV/bin/gunicorn" controlplane.wsgi --bind "$HOST:$PORT" --workers "${WEB_CONCURRENCY:-2}" \
  --threads 4 --access-logfile - --graceful-timeout 10 &
pids+=($!)
"$VENV/bin/celery" -A controlplane worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" \
  -n "worker@%h" &
pids+=($!)
"$VENV/bin/celery" -A controlplane beat --loglevel INFO --pidfile= &
pids+=($!)
demo_note=""
if [[ "${DEMO:-0}" == "1" ]]; then
  demo_note=" and the demo fleet (demo/production; nginx on :${DEMO_PORT:-8080} when installed)"
  # Sample instances (two slots) behind a private nginx when installed, and a demo service;
  # it stops its instances and nginx on TERM, which stop() sends.
  "$PY" manage.py demo_fleet --port "${DEMO_PORT:-8080}" &
  pids+=($!)
fi

cat <<MSG

  Control plane is running.
    Admin:     http://$HOST:$PORT/admin/   (log in with the user and password above)
    API docs:  http://$HOST:$PORT/api/docs/
    Health:    http://$HOST:$PORT/health
    API token: $PY manage.py create_token NAME --role operator
  Press Ctrl-C to stop web, worker and beat${demo_note}.

MSG
# Any process exiting takes the others down with it.
wait -n
