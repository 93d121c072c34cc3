# syntax=docker/dockerfile:1.7
#
# One image for every CIRASA service: the service is chosen by the command,
#   docker run cirasa:dev planner
# (ENTRYPOINT is the `cirasa` CLI, the default command is `gateway`).
#
# Stage 1 builds the cirasa wheel and collects wheels for all its dependencies;
# stage 2 installs them offline, so no build tools or sources end up in the image.

ARG PYTHON_VERSION=3.11

# --------------------------------------------------------------------------- build
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

COPY pyproject.toml README.md ./
COPY cli ./cli
COPY libs ./libs
COPY services ./services

# `pip wheel .` builds cirasa (hatchling, in an isolated build env) and drops a wheel for it
# and for every dependency into /wheels. numpy/astropy/sep/... ship manylinux wheels, so
# no compiler is needed. The cache mount only speeds up rebuilds.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels .

# ------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="cirasa" \
      org.opencontainers.image.description="CIRASA event-driven radio-astronomy job platform (gateway, planner, scheduler, monitor, accounting)" \
      org.opencontainers.image.licenses="GPL-3.0-or-later"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    CIRASA_HTTP_HOST=0.0.0.0 \
    CIRASA_HTTP_PORT=8000 \
    CIRASA_DATA_DIR=/data/files \
    CIRASA_JOBS_DIR=/data/jobs \
    CIRASA_LOG_JSON=true

# bubblewrap: the sandbox of jobs on a `local` platform (libs/backends/cirasa/backends/sandbox.py).
# Inside a container it needs unprivileged user namespaces; where the runtime forbids them, finders
# run unsandboxed and notebooks and container executables are refused with a clear NO.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cirasa \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/cirasa --create-home \
      --shell /usr/sbin/nologin cirasa

# Install from the build stage's wheels only (no index); the bind mount keeps the
# wheels themselves out of the image layers. (DL3013: the only candidate is the wheel built above.)
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels cirasa \
 && cirasa --help > /dev/null

# /data is the shared volume (uploads in /data/files, job directories in /data/jobs).
# Creating it here owned by the service user means a fresh named volume mounted at
# /data inherits this ownership.
RUN mkdir -p /app /data/files /data/jobs \
 && chown -R 10001:10001 /app /data

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# Liveness only (/healthz); compose and Kubernetes additionally probe /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('CIRASA_HTTP_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["cirasa"]
CMD ["gateway"]
