# syntax=docker/dockerfile:1
# Build stage: resolve and build wheels with the pinned constraints.
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY controlplane ./controlplane
COPY deployments ./deployments
COPY incidents ./incidents
COPY backups ./backups
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt .

# Runtime stage: no compilers, a non-root user, real pg_dump/pg_restore for backups.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    CONTROLPLANE_DATA_DIR=/var/lib/controlplane \
    STATIC_ROOT=/opt/controlplane/static
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client zstd \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 controlplane \
 && useradd --system --uid 1001 --gid controlplane --home /var/lib/controlplane controlplane \
 && mkdir -p /var/lib/controlplane /opt/controlplane \
 && chown controlplane:controlplane /var/lib/controlplane
COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/controlplane
COPY manage.py ./
COPY ops ./ops
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0
USER controlplane
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "controlplane.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
