# syntax=docker/dockerfile:1.7
# Switchyard control plane image (web, control worker, beat; the agent command is included too).
#   docker build -t switchyard .
#   docker run --env-file .env -p 8000:8000 switchyard            # web
#   docker run --env-file .env switchyard celery -A orchestrator.celery_app worker -Q control --pool threads -c 4

ARG PYTHON_VERSION=3.11

# --- front-end libraries the UI serves (package.json / package-lock.json) -------------------
FROM node:20-slim AS ui
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

# --- wheels for the project and every dependency --------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY executions ./executions
COPY agents ./agents
COPY approvals ./approvals
RUN pip wheel --wheel-dir /wheels '.[server]'

# --- runtime --------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG PYTHON_VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/switchyard/bin:$PATH \
    SWITCHYARD_VAR_DIR=/var/lib/switchyard \
    STATIC_ROOT=/opt/switchyard/static \
    LOG_FORMAT=json \
    PORT=8000
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid switchyard --home-dir /var/lib/switchyard \
       --shell /usr/sbin/nologin switchyard \
    && install -d -o switchyard -g switchyard -m 0750 /var/lib/switchyard
# Install from the wheels of the build stage (bind-mounted: they never land in a layer).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/switchyard \
    && /opt/switchyard/bin/pip install --no-index --find-links=/wheels 'switchyard[server]'
# settings.BASE_DIR is the directory holding the installed packages: the UI's npm libraries go
# beside them, where STATICFILES_DIRS looks.
COPY --from=ui /src/node_modules/@dagrejs \
    /opt/switchyard/lib/python${PYTHON_VERSION}/site-packages/node_modules/@dagrejs
WORKDIR /opt/switchyard
COPY manage.py ./
# Static files are collected at build time (WhiteNoise serves them from STATIC_ROOT); the
# placeholder key only lets the settings load here and is never used at runtime.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=4)"]
CMD ["sh", "-c", "exec uvicorn orchestrator.asgi:application --host 0.0.0.0 --port \"${PORT}\" --workers 2 --proxy-headers --forwarded-allow-ips='*'"]
