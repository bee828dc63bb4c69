# hybridcon's container image: one `hybridcon serve` node.
#
#   docker build -t hybridcon .
#   docker run -p 8080:8080 -v hybridcon-data:/var/lib/hybridcon hybridcon
#
# With nothing else set it runs on the embedded defaults (embedded PostgreSQL, in-process
# bus, keys and media under the data volume); deploy/compose.yaml and deploy/k8s/ run
# several nodes on PostgreSQL and Valkey. The base image is an argument so that a build
# without a registry can use a locally made one (`make image`, docs/operations.md).
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- build: resolve nothing, only install what requirements/run.lock pins ---------------
FROM ${PYTHON_IMAGE} AS build

# Same uv as the Makefile, so the image installs exactly what `make run` installs.
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never

# uv goes into a venv of its own: Debian's system Python refuses `pip install` (PEP 668),
# and it stays out of the runtime venv that is copied into the final stage.
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}" \
    && python3 -m venv --without-pip /opt/hybridcon/venv

WORKDIR /src
# The lock alone first, so a code change does not reinstall the dependencies.
COPY requirements/run.lock requirements/run.lock
# --require-hashes: every file is checked against the lock, as in the Makefile.
# --only-binary: aiortc, av, numpy, asyncpg and cryptography all ship manylinux wheels;
# a missing wheel must fail here, not quietly try to compile (there is no compiler).
RUN /opt/uv/bin/uv pip install --python /opt/hybridcon/venv/bin/python \
        --require-hashes --only-binary :all: -r requirements/run.lock

COPY pyproject.toml README.md ./
COPY server server
# --no-deps: the dependencies are the locked ones above; only hybridcon itself is built.
RUN /opt/uv/bin/uv pip install --python /opt/hybridcon/venv/bin/python --no-deps . \
    && find /opt/hybridcon/venv -name __pycache__ -type d -prune -exec rm -rf {} +

# --- web: the browser pages with their pinned libraries (npm ci from package-lock.json) --
FROM ${PYTHON_IMAGE} AS web
# Debian's npm, in this stage only: the runtime has no Node.js. The pages need no build
# step; npm only fetches hls.js as package-lock.json pins it (--omit=dev: not axe-core).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src/clients/web
COPY clients/web/package.json clients/web/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY clients/web/page.html clients/web/messages.json clients/web/icon.svg ./
COPY clients/web/js js
COPY clients/web/css css

# --- runtime: the interpreter, the venv and the event configuration, nothing else -------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed uid/gid so that volumes prepared outside the container (the shared key files)
# can be given to it; PostgreSQL (embedded) also refuses to run as root. keys/ and hls/
# exist in the image so that a volume mounted there (deploy/compose.yaml) starts with
# their owner and modes: keys private, HLS readable by nginx in its own container.
RUN groupadd --system --gid 10001 hybridcon \
    && useradd --system --uid 10001 --gid hybridcon --no-create-home \
        --home-dir /var/lib/hybridcon --shell /usr/sbin/nologin hybridcon \
    && install -d -o hybridcon -g hybridcon -m 0750 /var/lib/hybridcon \
    && install -d -o hybridcon -g hybridcon -m 0700 /var/lib/hybridcon/keys \
    && install -d -o hybridcon -g hybridcon -m 0755 /var/lib/hybridcon/hls

COPY --from=build /opt/hybridcon/venv /opt/hybridcon/venv
# The programme and word lists are found relative to the working directory by default
# (config/...), so the working directory holds them.
WORKDIR /opt/hybridcon
COPY config config
COPY --from=web /src/clients/web clients/web

# HOST: the default 127.0.0.1 would be unreachable from outside the container.
# DATA_DIR: the path deploy/nginx/hybridcon.conf serves HLS from.
ENV PATH=/opt/hybridcon/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HYBRIDCON_HOST=0.0.0.0 \
    HYBRIDCON_PORT=8080 \
    HYBRIDCON_DATA_DIR=/var/lib/hybridcon \
    HYBRIDCON_WEB_ROOT=/opt/hybridcon/clients/web

# Keys, the engagement spool, HLS, recordings (and the embedded PostgreSQL when no
# HYBRIDCON_DATABASE_URL is set) must outlive the container.
VOLUME ["/var/lib/hybridcon"]
EXPOSE 8080

# Numeric, so that Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# /healthz, not /readyz: a node whose PostgreSQL is away is not ready but must not be
# restarted for it (it spools engagement events meanwhile). No curl in a slim image, so
# Python's own urllib; it follows HYBRIDCON_PORT if a deploy changes the port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HYBRIDCON_PORT', '8080'), timeout=2)"]

# hybridcon drains on SIGTERM (readiness 503, then sockets close): docs/operations.md.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hybridcon"]
CMD ["serve"]
