#!/usr/bin/env bash
# Prepares this machine for the test suite: the Debian packages the tests
# drive for real, and the base images the product uses, built offline.
#
# Why build images: the test machines reach no image registry, so every image
# a test needs is made here from Debian packages and tagged with the name the
# product uses for real users (python:3.11-slim, ...). The code under test then
# takes the same path it takes on a user's VPS, where the engine pulls the
# official image instead. Images are cached by the engine: rebuilt only when
# missing. Idempotent; safe to run again.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh installs packages and builds images: run it as root (as root: bash tests/setup.sh)." >&2
    exit 1
  fi
}

# Debian mirror: read from this host's own apt configuration, never written here.
mirror() {
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -n1 || true)
  fi
  if [ -z "$uri" ]; then
    echo "no Debian mirror found in /etc/apt: configure apt first." >&2
    exit 1
  fi
  echo "$uri"
}

install_packages() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v git >/dev/null || missing+=(git)
  command -v docker >/dev/null || missing+=(docker.io)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  # The dashboard's browser tests drive headless Chromium over WebDriver.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "setup: starting the Docker engine"
    (systemctl start docker || service docker start) >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "the Docker engine is not running: start it (systemctl start docker)." >&2; exit 1; }
  fi
}

# Bump when the images' contents change: a machine that kept older images
# (CI runs where a session ran) rebuilds them instead of testing against
# something the product no longer expects.
PYTHON_IMAGE_REVISION=3

# build_python_image TAG SUITE VERSION: python VERSION (3.x) from Debian's
# packages, laid out like the official image where paas relies on it:
# `python3 -m venv` works and gives VERSION, `python` is on PATH, the headers
# are there (Python.h, as in the official images), and so is the shared
# libpython3.x.so.1.0 (the official images link python against it; a uwsgi
# compiled in a build stage needs it in the app's image).
build_python_image() {
  local tag=$1 suite=$2 version=$3
  local have
  have=$(docker image inspect -f '{{index .Config.Labels "org.paas.offline-base"}}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$PYTHON_IMAGE_REVISION" ]; then
    echo "setup: $tag present"
    return
  fi
  echo "setup: building $tag from Debian $suite (about a minute)"
  local root
  root=$(mktemp -d /tmp/paas-rootfs.XXXXXX)
  debootstrap --variant=minbase \
    --include="python3,python3-venv,python3-pip,python$version,python$version-venv,python$version-dev,ca-certificates" \
    "$suite" "$root" "$(mirror)" >"$root.log" 2>&1 || {
      echo "debootstrap of $suite failed; its log:" >&2; tail -n 20 "$root.log" >&2; exit 1; }
  # pip inside builds must trust what this host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  ln -sf "/usr/bin/python$version" "$root/usr/local/bin/python"
  # Where the suite's default python3 is another version, python3 on PATH
  # (the buildpack's `python3 -m venv`) must still be $version.
  if [ "$(readlink -f "$root/usr/bin/python3")" != "$root/usr/bin/python$version" ]; then
    ln -sf "/usr/bin/python$version" "$root/usr/local/bin/python3"
  fi
  # Checked, not assumed: what the buildpack and the tests rely on.
  local arch_lib
  arch_lib=$(ls -d "$root"/usr/lib/*-linux-gnu | head -n1)
  [ -e "$arch_lib/libpython$version.so.1.0" ] || {
    echo "Debian $suite gave no libpython$version.so.1.0: the $tag image would not be faithful to the official one." >&2; exit 1; }
  [ -f "$root/usr/include/python$version/Python.h" ] || {
    echo "Debian $suite gave no Python.h for $version: the $tag image would not be faithful to the official one." >&2; exit 1; }
  # debootstrap left /etc/apt/sources.list pointing at this host's mirror: kept,
  # so apt-get in a build (the buildpack's stage for native dependencies)
  # works as it does in the official images. Checked, not assumed.
  grep -q '^deb ' "$root/etc/apt/sources.list" || {
    echo "debootstrap of $suite left no apt source in /etc/apt/sources.list: builds with native dependencies would fail." >&2; exit 1; }
  # This host's mirror may serve a frozen suite whose Release file has
  # expired (sid, here: "Release file ... is expired"), and apt-get in a
  # build would then refuse every package. The official images never meet
  # this; the offline ones must not either.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99paas-offline-mirror"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # Imported under a temporary tag, then retagged: tests running on this
  # machine meanwhile never find the tag missing.
  local tmp="paas-setup/${tag//[:\/]/-}:$$"
  tar -C "$root" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c "LABEL org.paas.offline-base=$PYTHON_IMAGE_REVISION" \
    -c 'CMD ["python3"]' - "$tmp" >/dev/null
  rm -rf "$root" "$root.log"
  local got
  got=$(docker run --rm "$tmp" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$got" != "$version" ]; then
    docker rmi "$tmp" >/dev/null
    echo "the image built for $tag runs Python $got, not $version." >&2; exit 1
  fi
  docker tag "$tmp" "$tag"
  docker rmi "$tmp" >/dev/null
  echo "setup: built $tag"
}

# build_postgres_image TAG SUITE: PostgreSQL from Debian's packages, honouring
# the official image's contract where paas relies on it: POSTGRES_PASSWORD,
# POSTGRES_USER (default postgres), POSTGRES_DB (default: the user), data in
# /var/lib/postgresql/data (initdb on first start), listening on 0.0.0.0:5432,
# the server running as the postgres user; psql, pg_dump and pg_restore on PATH.
build_postgres_image() {
  local tag=$1 suite=$2 major=$3
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "setup: $tag present"
    return
  fi
  echo "setup: building $tag from Debian $suite (about a minute)"
  local root
  root=$(mktemp -d /tmp/paas-rootfs.XXXXXX)
  debootstrap --variant=minbase \
    --include="postgresql-$major,postgresql-client-$major,ca-certificates" \
    "$suite" "$root" "$(mirror)" >"$root.log" 2>&1 || {
      echo "debootstrap of $suite failed; its log:" >&2; tail -n 20 "$root.log" >&2; exit 1; }
  # The package's own cluster is not used: the entrypoint makes one in PGDATA.
  rm -rf "$root/etc/postgresql/$major" "$root/var/lib/postgresql/$major"
  mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
  chroot "$root" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
  chmod 2777 "$root/var/run/postgresql"
  cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# The official postgres image's contract, for the parts paas relies on.
set -eu
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
    chown -R postgres:postgres "$PGDATA"
  fi
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "Error: the database is uninitialized and POSTGRES_PASSWORD is not set: set it (docker run -e POSTGRES_PASSWORD=...)." >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres \
      -c "CREATE DATABASE \"$db\"" >/dev/null
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
ENTRYPOINT
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' \
    -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/$major/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'LABEL org.paas.offline-base=1' \
    -c 'EXPOSE 5432' \
    -c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    -c 'CMD ["postgres"]' - "$tag" >/dev/null
  rm -rf "$root" "$root.log"
  echo "setup: built $tag"
}

# The offsite-backup tests talk to moto's S3 server over real HTTP (never
# a mock inside paas), installed from the Python package index with pip as
# this host configures it (its index is never written here).
MOTO_VENV=/opt/paas-test/moto
install_moto() {
  if [ -x "$MOTO_VENV/bin/moto_server" ]; then
    echo "setup: moto present"
    return
  fi
  echo "setup: installing moto's S3 server into $MOTO_VENV"
  mkdir -p "$(dirname "$MOTO_VENV")"
  python3 -m venv "$MOTO_VENV" || {
    echo "cannot make a Python venv for moto: install python3-venv (apt-get install python3-venv), then run tests/setup.sh again." >&2
    exit 1
  }
  "$MOTO_VENV/bin/pip" install -q 'moto[server]' || {
    echo "pip could not install moto[server] into $MOTO_VENV: check that pip reaches a package index (pip config list), then run tests/setup.sh again." >&2
    exit 1
  }
}

need_root
install_packages
install_moto
# In parallel: each is mostly waiting on the mirror.
build_python_image python:3.11-slim bookworm 3.11 &
p1=$!
build_python_image python:3.13-slim trixie 3.13 &
p2=$!
# Debian's unstable suite is where the newest Python is packaged.
build_python_image python:3.14-slim sid 3.14 &
p3=$!
build_postgres_image postgres:17 trixie 17 &
p4=$!
wait $p1
wait $p2
wait $p3
wait $p4
echo "setup: ready"
