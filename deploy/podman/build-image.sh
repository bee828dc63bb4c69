#!/bin/sh
# `make image`: build the Dockerfile for real with Debian's podman where no registry
# serves base images (this project's machines reach package registries only). The base
# is a Debian bookworm root filesystem made with debootstrap from Debian's own archive
# and imported, standing in for python:3.11-slim-bookworm (same Debian, same Python
# 3.11); the Dockerfile takes it through its PYTHON_IMAGE argument. Then the image is
# started on its embedded defaults and its /healthz is fetched: the HEALTHCHECK's URL.
# Slow (minutes: debootstrap, then the wheels); not part of `make test`. Needs root.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${IMAGE_WORK:-/var/tmp/hybridcon-image}
base=localhost/hybridcon-base:bookworm
image=${IMAGE:-localhost/hybridcon:latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

missing=""
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

mkdir -p "$work"
# crun cannot set this machine's rlimits (hard nofile limit 20,000; cgroups in hybrid
# mode): runc, and ulimits that fit under the hard limit.
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$work/containers.conf"

if ! podman image exists "$base"; then
    rootfs="$work/rootfs"
    rm -rf "$rootfs"
    # minbase plus what the Dockerfile runs: python3 with venv (ensurepip), the passwd
    # tools are in minbase already.
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base"
    rm -rf "$rootfs"
fi

# The build downloads wheels from PyPI. Where TLS to the registries is intercepted by a
# proxy with its own CA (as on this project's machines), the image's CA list does not
# know it: the build steps see the host's CA bundle instead, and pip and uv are told to
# use it. Only the build's RUN steps see these mounts; nothing lands in the image.
ca=/etc/ssl/certs/ca-certificates.crt
printf '[global]\ncert = %s\n' "$ca" > "$work/pip.conf"
printf 'native-tls = true\n' > "$work/uv.toml"
# npm (the pages' stage) trusts Node's own CA list unless told: the same host bundle.
printf 'cafile=%s\n' "$ca" > "$work/npmrc"
# --format docker: the OCI format has no HEALTHCHECK, and podman would drop it.
podman build --format docker --build-arg PYTHON_IMAGE="$base" \
    -v "$ca:$ca:ro" -v "$work/pip.conf:/etc/pip.conf:ro" -v "$work/uv.toml:/etc/uv/uv.toml:ro" \
    -v "$work/npmrc:/etc/npmrc:ro" \
    -t "$image" "$repo"
podman image ls "$image"

# Smoke run: the embedded defaults, the port published on loopback, /healthz as the
# HEALTHCHECK fetches it, then a SIGTERM stop (the drain) within the grace period.
name=hybridcon-image-check
podman rm -f "$name" >/dev/null 2>&1 || true
podman run -d --name "$name" -p 127.0.0.1:18080:8080 "$image" >/dev/null
trap 'podman logs "$name" 2>&1 | tail -n 20; podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
i=0
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:18080/healthz', timeout=2)" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 90 ]; then
        echo "image check: /healthz did not answer within 90 s" >&2
        exit 1
    fi
    sleep 1
done
echo "image check: /healthz answered after ~${i} s"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:18080/readyz', timeout=5).read().decode())"
python3 - <<'PY'
import urllib.request

# The pages and their pinned player library are in the image.
for path in ("/", "/static/js/attendee.js", "/static/vendor/hls.mjs"):
    with urllib.request.urlopen("http://127.0.0.1:18080" + path, timeout=5) as resp:
        print(f"image check: {path} {resp.status} {resp.headers['Content-Type']}")
PY
podman healthcheck run "$name" && echo "image check: HEALTHCHECK passes"
podman stop -t 60 "$name" >/dev/null
echo "image check: stopped with exit status $(podman inspect -f '{{.State.ExitCode}}' "$name")"
