#!/usr/bin/env bash
# Deploy benchmark (issue 13), paas against Piku on this machine. Prints, in
# one run:
#   1. the cold deploy of paas: push of a new app to its first 200;
#   2. the code-change redeploy, paas and Piku alternating round by round
#      (ROUNDS, default 5), page cache dropped before each: from the start of
#      `git push` to the first response showing what only the NEW Python code
#      produces (a template inside a rendered block AND views.py change; see
#      /work/shared/notes/piku.md "Timing fairly"); min/median/max of each and
#      the ratio paas/Piku of the medians;
#   3. a live app's p99 latency (wrk --latency -t1 -c4) idle before, during
#      another app's cold build (the blog's own pip install, no compiler),
#      and idle after; bench/build-starve.sh measures the same on the test
#      fixture with a heavier build (psycopg2 compiled from source);
#   4. the daemon's RSS (VmRSS) after 20 deploys across 10 apps.
# Asserts nothing; prints figures. Run as root (it drops the page cache and
# sets Piku up), with what the tests need (bash tests/setup.sh).
#
#   bash bench/deploy.sh
#   ROUNDS=3 bash bench/deploy.sh
#   PAAS_BIN=target/release/paas bash bench/deploy.sh
#   KEEP_PIKU=1 bash bench/deploy.sh     # leave Piku's daemons running after
#
# The app is a real Django Girls tutorial blog (Django 4.2, SQLite), pinned
# below; it is not part of this repository. Fetch it, and Piku, as bare git
# dirs into $CORPUS_MIRRORS/<owner>+<name>/repo (default /work/.mirror):
# sava9ecode/djangogirls_blog and piku/piku (the `fetch` tool of a session,
# or `git clone --bare https://github.com/OWNER/NAME $CORPUS_MIRRORS/OWNER+NAME/repo`).
#
# The app is pushed unmodified except for what each platform needs:
# - paas: config vars PYTHON_VERSION=3.11 (its Dockerfile says python:3.10,
#   whose image this machine cannot pull) and SECRET_ADMIN_URL (its urls.py
#   requires it, as its .env.template says);
# - Piku: a Procfile and an ENV file, as /work/shared/notes/piku.md says.
#
# Piku is set up beside paas when it is not (idempotent), as
# /work/shared/notes/piku.md describes: apt packages, user piku, piku.py at
# the pinned commit with its nginx templates listening on $PIKU_PORT instead
# of 80, a private sshd on 127.0.0.1:$PIKU_SSH_PORT, and stand-ins for its
# systemd units (uWSGI emperor, nginx, inotifywait -> nginx -s reload).
# Its state is kept in $PIKU_STATE (keys, configs, pids, logs).
# The whole script is one block, read before it runs: editing the file
# during a run does not change that run.
{
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
ROUNDS=${ROUNDS:-5}
MIRRORS=${CORPUS_MIRRORS:-/work/.mirror}
BLOG_REPO=sava9ecode/djangogirls_blog
BLOG_COMMIT=74216589c15e21ea81cf81a701f76735a3dd2d3f
PIKU_REPO=piku/piku
PIKU_COMMIT=ca90545d87159b004d9c736d48ac5ed19fca3757
PIKU_PORT=${PIKU_PORT:-8480}
PIKU_SSH_PORT=${PIKU_SSH_PORT:-2222}
PIKU_STATE=${PIKU_STATE:-/var/lib/paas-bench-piku}
PIKU_HOME=/home/piku
PIKU_APP=blog
APPS=10    # apps for the RSS figure
DEPLOYS=20 # deploys for the RSS figure
PY=3.11    # the Python of paas's base image used (python:3.11-slim)

fail() {
  echo "bench/deploy.sh: $*" >&2
  exit 1
}
note() { echo "  .. $*" >&2; }

# ---- preconditions -----------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "run it as root: it drops the page cache and sets Piku up."
command -v docker >/dev/null && docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable: start it."
docker image inspect "python:$PY-slim" >/dev/null 2>&1 || fail "the image python:$PY-slim is missing: run bash tests/setup.sh."
blog_src=$MIRRORS/${BLOG_REPO/\//+}/repo
piku_src=$MIRRORS/${PIKU_REPO/\//+}/repo
git -C "$blog_src" cat-file -e "$BLOG_COMMIT^{commit}" 2>/dev/null ||
  fail "the blog is missing: fetch $BLOG_REPO (commit $BLOG_COMMIT) as a bare git dir into $blog_src."
git -C "$piku_src" cat-file -e "$PIKU_COMMIT^{commit}" 2>/dev/null ||
  fail "Piku is missing: fetch $PIKU_REPO (commit $PIKU_COMMIT) as a bare git dir into $piku_src."

# The paas binary: a release build if there is a fresh one, else the debug
# build (a release build takes ~30 min on a loaded 2-core machine).
newest_src=$(find server/src buildpacks Cargo.toml Cargo.lock -type f -printf '%T@\n' | sort -n | tail -n1)
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${PAAS_BIN:-}" ]; then
  BIN=$(realpath "$PAAS_BIN")
  kind="given by PAAS_BIN"
elif [ -x "$target/release/paas" ] && [ "$(stat -c %Y "$target/release/paas")" -ge "${newest_src%.*}" ]; then
  BIN=$target/release/paas
  kind="release build"
else
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --quiet --bin paas || fail "cargo build failed: see above."
  BIN=$target/debug/paas
  kind="debug build (no fresh release build)"
fi
# The commit measured: the last one that changed the daemon's code.
commit=$(git log -1 --format=%h -- server buildpacks Cargo.toml Cargo.lock)$(git diff --quiet HEAD -- server buildpacks Cargo.toml Cargo.lock || echo "+uncommitted")

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
GIT=(git -c user.name=bench -c user.email=bench@localhost)

# ---- Piku ----------------------------------------------------------------------
PIKU_STARTED=()
# Piku runs on Debian's Python (python3-click, uwsgi-plugin-python3): a
# python3 earlier on root's PATH (pyenv, /usr/local) must not be its.
PIKU_PATH=/usr/bin:/bin:/usr/sbin:/sbin
piku_as() { setpriv --reuid=piku --regid=www-data --init-groups env PATH=$PIKU_PATH HOME=$PIKU_HOME USER=piku LOGNAME=piku "$@"; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

piku_packages() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx)
  /usr/bin/python3 -c 'import click' 2>/dev/null || missing+=(python3-click)
  command -v virtualenv >/dev/null || missing+=(python3-virtualenv)
  command -v uwsgi >/dev/null || missing+=(uwsgi)
  ls /usr/lib/uwsgi/plugins/python3*_plugin.so >/dev/null 2>&1 || missing+=(uwsgi-plugin-python3)
  /usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v inotifywait >/dev/null || missing+=(inotify-tools)
  command -v wrk >/dev/null || missing+=(wrk)
  [ ${#missing[@]} -eq 0 ] && return
  note "installing ${missing[*]}"
  # Debian would start nginx on port 80 (paas's) and sshd on 22: forbid
  # starting services during the install, with a policy-rc.d of our own.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$PIKU_STATE/apt.log" 2>&1 ||
    { [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d; fail "Piku needs these Debian packages, and apt-get could not install them: ${missing[*]} (see $PIKU_STATE/apt.log)."; }
  [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

piku_setup() {
  mkdir -p "$PIKU_STATE"
  chmod 700 "$PIKU_STATE"
  piku_packages
  # The user, in group www-data (nginx's), home 750 so nginx reaches the
  # uWSGI sockets. Password '*' rather than '!': sshd without PAM refuses a
  # locked account.
  if ! id piku >/dev/null 2>&1; then
    useradd -m -d $PIKU_HOME -g www-data -s /bin/bash piku
  fi
  usermod -p '*' piku
  chmod 750 $PIKU_HOME
  # piku.py at the pinned commit; its templates hard-code `listen 80`: read
  # the port from the app's ENV (NGINX_HTTP_PORT) instead.
  git -C "$piku_src" show "$PIKU_COMMIT:piku.py" |
    sed 's/^\(  listen *\$NGINX_IPV[46]_ADDRESS\):80;/\1:$NGINX_HTTP_PORT;/' >"$PIKU_STATE/piku.py"
  grep -q ':\$NGINX_HTTP_PORT;' "$PIKU_STATE/piku.py" && ! grep -q 'ADDRESS:80;' "$PIKU_STATE/piku.py" ||
    fail "piku.py at $PIKU_COMMIT no longer has the 'listen ...:80;' lines this script rewrites."
  if ! cmp -s "$PIKU_STATE/piku.py" $PIKU_HOME/piku.py; then
    install -o piku -g www-data -m 755 "$PIKU_STATE/piku.py" $PIKU_HOME/piku.py
  fi
  [ -f $PIKU_HOME/.piku/uwsgi/uwsgi.ini ] ||
    (cd $PIKU_HOME && piku_as python3 $PIKU_HOME/piku.py setup >"$PIKU_STATE/setup.log" 2>&1) ||
    fail "python3 ~piku/piku.py setup failed (see $PIKU_STATE/setup.log)."
  # A fresh ed25519 key for our pushes, authorised through Piku's setup:ssh.
  if [ ! -f "$PIKU_STATE/id_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C piku-bench -f "$PIKU_STATE/id_ed25519"
  fi
  if ! grep -qF "$(cut -d' ' -f2 "$PIKU_STATE/id_ed25519.pub")" $PIKU_HOME/.ssh/authorized_keys 2>/dev/null; then
    cp "$PIKU_STATE/id_ed25519.pub" /tmp/piku-bench-key.pub
    chmod 644 /tmp/piku-bench-key.pub
    (cd $PIKU_HOME && piku_as python3 $PIKU_HOME/piku.py setup:ssh /tmp/piku-bench-key.pub) >>"$PIKU_STATE/setup.log" 2>&1
    rm -f /tmp/piku-bench-key.pub
    grep -qF "$(cut -d' ' -f2 "$PIKU_STATE/id_ed25519.pub")" $PIKU_HOME/.ssh/authorized_keys ||
      fail "piku.py setup:ssh did not authorise the key (see $PIKU_STATE/setup.log)."
  fi
  # A private sshd.
  [ -f "$PIKU_STATE/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$PIKU_STATE/ssh_host_ed25519_key"
  cat >"$PIKU_STATE/sshd_config" <<EOF
Port $PIKU_SSH_PORT
ListenAddress 127.0.0.1
HostKey $PIKU_STATE/ssh_host_ed25519_key
PidFile $PIKU_STATE/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers piku
EOF
  # nginx: its own configuration, including Piku's per-app files.
  cat >"$PIKU_STATE/nginx.conf" <<EOF
user www-data;
worker_processes auto;
pid $PIKU_STATE/nginx.pid;
error_log $PIKU_STATE/nginx-error.log;
events { worker_connections 768; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  access_log off;
  include $PIKU_HOME/.piku/nginx/*.conf;
}
EOF
}

piku_start() {
  mkdir -p /run/sshd
  if ! running "$PIKU_STATE/sshd.pid"; then
    /usr/sbin/sshd -f "$PIKU_STATE/sshd_config" -E "$PIKU_STATE/sshd.log" ||
      fail "the private sshd did not start on 127.0.0.1:$PIKU_SSH_PORT (see $PIKU_STATE/sshd.log); is the port taken?"
    PIKU_STARTED+=("$PIKU_STATE/sshd.pid")
  fi
  if ! running "$PIKU_STATE/uwsgi.pid"; then
    # setsid from a child of this shell execs in place: $! is uWSGI's pid,
    # its process group's and its session's.
    setsid setpriv --reuid=piku --regid=www-data --init-groups \
      env PATH=$PIKU_PATH HOME=$PIKU_HOME uwsgi --ini $PIKU_HOME/.piku/uwsgi/uwsgi.ini >>"$PIKU_STATE/uwsgi.out" 2>&1 &
    echo $! >"$PIKU_STATE/uwsgi.pid"
    PIKU_STARTED+=("$PIKU_STATE/uwsgi.pid")
  fi
  if ! running "$PIKU_STATE/nginx.pid"; then
    nginx -c "$PIKU_STATE/nginx.conf" 2>>"$PIKU_STATE/nginx-error.log" ||
      fail "nginx did not start with $PIKU_STATE/nginx.conf (see $PIKU_STATE/nginx-error.log); is port $PIKU_PORT or 443 taken?"
    PIKU_STARTED+=("$PIKU_STATE/nginx.pid")
  fi
  if ! running "$PIKU_STATE/inotify.pid"; then
    setsid bash -c "inotifywait -m -q -e close_write,moved_to,delete $PIKU_HOME/.piku/nginx |
      while read -r _; do nginx -c $PIKU_STATE/nginx.conf -s reload; done" >>"$PIKU_STATE/inotify.log" 2>&1 &
    echo $! >"$PIKU_STATE/inotify.pid"
    PIKU_STARTED+=("$PIKU_STATE/inotify.pid")
  fi
  sleep 1
  for f in sshd uwsgi nginx inotify; do
    running "$PIKU_STATE/$f.pid" || fail "Piku's $f stopped right after its start (see $PIKU_STATE/$f*.log)."
  done
}

piku_stop() {
  local f p
  for f in "${PIKU_STARTED[@]}"; do
    p=$(cat "$f" 2>/dev/null) || continue
    case $f in
      # their own process groups (setsid); uWSGI reloads on SIGTERM, stops on SIGINT
      *uwsgi.pid) kill -INT -- -"$p" 2>/dev/null || true ;;
      *inotify.pid) kill -- -"$p" 2>/dev/null || true ;;
      *) kill "$p" 2>/dev/null || true ;;
    esac
    rm -f "$f"
  done
}

# Piku's app is made anew each run: remove its workers first (the emperor
# stops them), then its files.
piku_reset_app() {
  # The last run's worker logs stay readable in $PIKU_STATE/last-run.
  if [ -d $PIKU_HOME/.piku/logs/$PIKU_APP ]; then
    rm -rf "$PIKU_STATE/last-run"
    cp -a $PIKU_HOME/.piku/logs/$PIKU_APP "$PIKU_STATE/last-run"
  fi
  rm -f $PIKU_HOME/.piku/uwsgi-enabled/${PIKU_APP}_*.ini
  sleep 1
  rm -rf $PIKU_HOME/.piku/{apps,repos,envs,logs,data,cache}/$PIKU_APP $PIKU_HOME/.piku/uwsgi-available/${PIKU_APP}_*.ini \
    $PIKU_HOME/.piku/nginx/$PIKU_APP.*
}

# ---- the app's trees -----------------------------------------------------------
work=$(mktemp -d /tmp/paas-deploy-bench.XXXXXX)
chmod 755 "$work"
run=bd$RANDOM
pid=""
wrk_pid=""
push_pid=""
cleanup() {
  set +e
  [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null
  [ -n "$push_pid" ] && kill "$push_pid" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for a in $(docker ps -a --format '{{.Label "paas.app"}}' | grep "^$run-" | sort -u); do
    docker rm -f $(docker ps -aq --filter "label=paas.app=$a") >/dev/null 2>&1
    docker network rm "paas-$a" >/dev/null 2>&1
  done
  docker rmi $(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^paas/$run-") >/dev/null 2>&1
  docker volume rm $(docker volume ls -q | grep "$run-") >/dev/null 2>&1
  # Dependency images (paas-deps:<key>) this run built: their keys are this
  # run's own (its requirements carry a comment unique to the run).
  docker rmi $(cat "$work"/*.log 2>/dev/null | grep -o 'Installing dependencies into paas-deps:[0-9a-f]*' | sed 's/.* //' | sort -u) >/dev/null 2>&1
  [ -z "${KEEP_PIKU:-}" ] && [ ${#PIKU_STARTED[@]} -gt 0 ] && { piku_reset_app; piku_stop; }
  rm -rf "$work"
}
trap cleanup EXIT

# Apply round TAG's change to a tree: a template line inside the rendered
# block, and views.py giving the marker only new code can produce.
change() { # DIR TAG
  local v=$1/blog/views.py t=$1/blog/templates/blog/post_list.html
  if grep -q bench_marker "$v"; then
    sed -i "s/\"view-[a-z0-9]*\"/\"view-$2\"/" "$v"
    sed -i "s/tpl-[a-z0-9]*/tpl-$2/" "$t"
  else
    sed -i "s/context = {\"posts\": posts}/context = {\"posts\": posts, \"bench_marker\": \"view-$2\"}/" "$v"
    sed -i "0,/{% block content %}/s//{% block content %}\n<p class=\"bench\">tpl-$2 {{ bench_marker }}<\/p>/" "$t"
  fi
  grep -q "\"view-$2\"" "$v" && grep -q "tpl-$2 {{ bench_marker }}" "$t" ||
    fail "the change could not be applied to $BLOG_REPO's blog/views.py or post_list.html."
  "${GIT[@]}" -C "$1" commit -qam "round $2"
}

tree() { # DIR: the pinned commit's tree as one commit
  git clone -q --no-checkout "$blog_src" "$1"
  git -C "$1" checkout -q --orphan bench "$BLOG_COMMIT"
  "${GIT[@]}" -C "$1" commit -qm "$BLOG_REPO at $BLOG_COMMIT"
  git -C "$1" branch -q -M bench main
}

# timed_push DIR REMOTE URL HOST MARKER LOG: seconds from the start of the
# push to the first answer whose body contains MARKER (polled every 20 ms,
# a new connection each time), then waits for the push to end.
timed_push() {
  python3 - "$@" <<'EOF'
import http.client, subprocess, sys, time, urllib.parse
d, remote, url, host, marker, log = sys.argv[1:]
u = urllib.parse.urlsplit(url)
env = None
t0 = time.monotonic()
with open(log, "w") as out:
    push = subprocess.Popen(["git", "-C", d, "push", "-f", remote, "main"], stdout=out, stderr=subprocess.STDOUT)
    seen = None
    while time.monotonic() - t0 < 900:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            c.request("GET", u.path or "/", headers={"Host": host})
            r = c.getresponse()
            body = r.read().decode("utf-8", "replace")
            c.close()
            if (marker == "200" and r.status == 200) or (marker != "200" and marker in body):
                seen = time.monotonic() - t0
                break
        except OSError:
            pass
        if push.poll() not in (None, 0):
            break
        time.sleep(0.02)
    rc = push.wait()
if rc != 0:
    print(f"the push failed (exit {rc}); see {log}", file=sys.stderr)
    sys.exit(1)
if seen is None:
    print(f"{marker!r} never appeared at {url} (Host {host}) within 900 s", file=sys.stderr)
    sys.exit(1)
print(f"{seen:.2f}")
EOF
}

stats() { # numbers -> "min median max"
  python3 -c 'import statistics,sys; v=sorted(map(float,sys.argv[1:])); print("%.2f %.2f %.2f" % (v[0], statistics.median(v), v[-1]))' "$@"
}

# ---- paas daemon ---------------------------------------------------------------
data=$work/data
HTTP=$(port)
ADMIN=$(port)
PAAS_LOG=info "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
  --domain localhost --build-network host >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
[ -f "$data/admin.token" ] || fail "the paas daemon did not start: $(tail -n3 "$work/daemon.log")"
token=$(cat "$data/admin.token")
api() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
for _ in $(seq 1 50); do [ "$(api "http://127.0.0.1:$ADMIN/api/apps")" = 200 ] && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status; }
sleep 1
rss_start=$(rss)
paas_create() { # APP
  [ "$(api -X POST -d "{\"name\":\"$1\"}" "http://127.0.0.1:$ADMIN/api/apps")" = 201 ] ||
    [ "$(api "http://127.0.0.1:$ADMIN/api/apps/$1")" = 200 ] || fail "paas did not create the app $1."
  [ "$(api -X PATCH -d "{\"PYTHON_VERSION\":\"$PY\",\"SECRET_ADMIN_URL\":\"secret\"}" "http://127.0.0.1:$ADMIN/api/apps/$1/config")" = 200 ] ||
    fail "paas did not take the config vars of $1."
}
paas_remote() { echo "http://paas:$token@127.0.0.1:$ADMIN/$1.git"; }
deploys=0
# A push's output shows its dependencies being installed (pip or uv).
DEPS_RE='remote: .*(pip install|uv pip|Installing collected|Installed [0-9]+ package|Downloading|Installing dependencies into paas-deps)'

echo "paas: $kind $BIN, code of commit $commit (HEAD $(git rev-parse --short HEAD)); its own data dir and ports"
echo "app: $BLOG_REPO at ${BLOG_COMMIT:0:7} (Django Girls tutorial blog, Django 4.2, SQLite)"
echo "piku: $PIKU_REPO at ${PIKU_COMMIT:0:7}, uWSGI + nginx on 127.0.0.1:$PIKU_PORT"
echo "machine: $(nproc) cores, $(free -m | awk '/Mem:/ {print $2}') MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---- 1. cold deploy of paas ---------------------------------------------------
# The first push of a new app to a fresh daemon. A comment unique to this run
# in requirements.txt keeps any dependency image of an earlier run (keyed by
# the requirements' content) from being reused.
blog=$run-blog
tree "$work/paas"
echo "# bench run $run" >>"$work/paas/requirements.txt"
"${GIT[@]}" -C "$work/paas" commit -qam "requirements of run $run"
paas_create "$blog"
drop_caches
cold=$(timed_push "$work/paas" "$(paas_remote "$blog")" "http://127.0.0.1:$HTTP/" "$blog.localhost" 200 "$work/paas-cold.log") ||
  fail "the cold push to paas failed: $(grep -v '^\s*$' "$work/paas-cold.log" | tail -n3)"
deploys=$((deploys + 1))
deps=no
grep -qiE "$DEPS_RE" "$work/paas-cold.log" && deps=yes
printf 'cold deploy, paas (new app, push -> first 200): %.1f s  (dependencies installed in this push: %s)\n' "$cold" "$deps"
sed -n 's/^remote: *-----> \(Done in .*\)/  paas says: \1/p' "$work/paas-cold.log" | tr -s ' ' | head -n1

# ---- Piku ----------------------------------------------------------------------
piku_setup
piku_start
piku_reset_app
tree "$work/piku"
cat >"$work/piku/Procfile" <<EOF
wsgi: mysite.wsgi:application
release: python manage.py migrate --noinput && python manage.py collectstatic --noinput
EOF
cat >"$work/piku/ENV" <<EOF
NGINX_SERVER_NAME=$PIKU_APP.localhost
NGINX_STATIC_PATHS=/static:static
NGINX_HTTP_PORT=$PIKU_PORT
ALLOWED_HOSTS=.localhost,127.0.0.1
SECRET_ADMIN_URL=secret
EOF
"${GIT[@]}" -C "$work/piku" add Procfile ENV
"${GIT[@]}" -C "$work/piku" commit -qm "Piku's Procfile and ENV"
export GIT_SSH_COMMAND="ssh -i $PIKU_STATE/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
piku_remote=ssh://piku@127.0.0.1:$PIKU_SSH_PORT/$PIKU_APP
drop_caches
piku_cold=$(timed_push "$work/piku" "$piku_remote" "http://127.0.0.1:$PIKU_PORT/" "$PIKU_APP.localhost" 200 "$work/piku-cold.log") ||
  fail "the first push to Piku failed: $(grep -v '^\s*$' "$work/piku-cold.log" | tail -n5)"
printf 'cold deploy, Piku (reference; its pip cache in ~piku may be warm): %.1f s\n' "$piku_cold"
echo

# ---- 2. code-change redeploy, alternating -------------------------------------
echo "code-change redeploy (template in a rendered block + views.py), push start -> first response from new code, page cache dropped before each:"
paas_t=()
piku_t=()
for r in $(seq 1 "$ROUNDS"); do
  tag=r$r$run
  change "$work/paas" "$tag"
  change "$work/piku" "$tag"
  drop_caches
  a=$(timed_push "$work/paas" "$(paas_remote "$blog")" "http://127.0.0.1:$HTTP/" "$blog.localhost" "tpl-$tag view-$tag" "$work/paas-r$r.log") ||
    fail "round $r: the push to paas failed: $(grep -v '^\s*$' "$work/paas-r$r.log" | tail -n3)"
  deploys=$((deploys + 1))
  drop_caches
  b=$(timed_push "$work/piku" "$piku_remote" "http://127.0.0.1:$PIKU_PORT/" "$PIKU_APP.localhost" "tpl-$tag view-$tag" "$work/piku-r$r.log") ||
    fail "round $r: the push to Piku failed: $(grep -v '^\s*$' "$work/piku-r$r.log" | tail -n5)"
  paas_t+=("$a")
  piku_t+=("$b")
  printf '  round %d: paas %6.2f s   Piku %6.2f s   %s\n' "$r" "$a" "$b" \
    "$(sed -n 's/^remote: *-----> \(Done in .*\)/(paas says: \1)/p' "$work/paas-r$r.log" | tr -s ' ' | head -n1)"
done
read -r amin amed amax < <(stats "${paas_t[@]}")
read -r bmin bmed bmax < <(stats "${piku_t[@]}")
printf '  paas: min %.2f  median %.2f  max %.2f s\n' "$amin" "$amed" "$amax"
printf '  Piku: min %.2f  median %.2f  max %.2f s\n' "$bmin" "$bmed" "$bmax"
printf '  ratio paas/Piku (medians): %.2f  (goal: <= 0.7)\n' "$(echo "$amed / $bmed" | bc -l)"
echo
# Piku is done: stop what this run started, so it does not weigh on the rest.
if [ -z "${KEEP_PIKU:-}" ]; then
  piku_reset_app
  piku_stop
  PIKU_STARTED=()
fi

# ---- 3. p99 of a live app, idle and during another app's cold build -----------
blog_url="http://127.0.0.1:$HTTP/"
wrk_p99() { awk '/^ +99%/ {print $2}' "$1"; }
wrk_line() { # FILE: "p50 X, p99 Y, N requests, E errors"
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /requests in/ {n=$1} /Non-2xx/ {e+=$NF} /Socket errors/ {s=$0}
       END {printf "p50 %s, p99 %s, %s requests, non-2xx %d%s", p50, p99, n, e, (s ? "; " s : "")}' "$1"
}
load() { cut -d' ' -f1 /proc/loadavg; }
# Idle before and after the build: the machine is shared, and a single idle
# window can catch someone else's burst.
load_idle=$(load)
wrk -t1 -c4 -d15s --latency -H "Host: $blog.localhost" "$blog_url" >"$work/wrk-idle.txt" 2>&1
coldapp=$run-a2
tree "$work/a2"
echo "# bench run $run, second app" >>"$work/a2/requirements.txt"
"${GIT[@]}" -C "$work/a2" commit -qam "requirements of run $run, second app"
paas_create "$coldapp"
drop_caches
git -C "$work/a2" push "$(paas_remote "$coldapp")" main >"$work/a2-cold.log" 2>&1 &
push_pid=$!
t0=$(date +%s.%N)
load_build=$(load)
wrk -t1 -c4 -d3600s --latency -H "Host: $blog.localhost" "$blog_url" >"$work/wrk-build.txt" 2>&1 &
wrk_pid=$!
wait "$push_pid" || fail "the cold push of a second app to paas failed: $(grep -v '^\s*$' "$work/a2-cold.log" | tail -n3)"
push_pid=""
build_s=$(echo "$(date +%s.%N) - $t0" | bc)
kill -INT "$wrk_pid"
wait "$wrk_pid" || true
wrk_pid=""
deploys=$((deploys + 1))
deps2=no
grep -qiE "$DEPS_RE" "$work/a2-cold.log" && deps2=yes
sleep 5
load_after=$(load)
wrk -t1 -c4 -d15s --latency -H "Host: $blog.localhost" "$blog_url" >"$work/wrk-after.txt" 2>&1
echo "live app's latency under light load (wrk -t1 -c4 --latency, $blog; machine load average at the start of each):"
echo "  idle before (15 s, load $load_idle): $(wrk_line "$work/wrk-idle.txt")"
printf '  during another app'"'"'s cold push (%.0f s, load %s, dependencies installed: %s): %s\n' "$build_s" "$load_build" "$deps2" "$(wrk_line "$work/wrk-build.txt")"
echo "  idle after (15 s, load $load_after): $(wrk_line "$work/wrk-after.txt")"
python3 - "$(wrk_p99 "$work/wrk-idle.txt")" "$(wrk_p99 "$work/wrk-build.txt")" "$(wrk_p99 "$work/wrk-after.txt")" <<'EOF'
import re, sys
def ms(s):
    m = re.match(r"([0-9.]+)(us|ms|s)$", s)
    return float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000}[m[2]] if m else None
a, b, c = (ms(x) for x in sys.argv[1:])
if a and b and c:
    print("  p99 during the build / idle: %.1fx (idle before), %.1fx (idle after)  (goal: <= 2x)" % (b / a, b / c))
else:
    print("  p99 ratio: wrk printed no latency")
EOF
echo

# ---- 4. RSS after 20 deploys across 10 apps -------------------------------------
# Apps 3..10 get their first deploy (the same requirements as the blog), then
# template-only redeploys round-robin until 20 deploys in all.
for i in $(seq 3 $APPS); do
  a=$run-a$i
  [ -d "$work/a$i" ] || { tree "$work/a$i"; echo "# bench run $run" >>"$work/a$i/requirements.txt"; "${GIT[@]}" -C "$work/a$i" commit -qam req; }
  paas_create "$a"
  git -C "$work/a$i" push -q "$(paas_remote "$a")" main >"$work/a$i.log" 2>&1 ||
    fail "the push of app $a failed: $(grep -v '^\s*$' "$work/a$i.log" | tail -n3)"
  deploys=$((deploys + 1))
done
i=2
while [ $deploys -lt $DEPLOYS ]; do
  change "$work/a$i" "x$deploys"
  git -C "$work/a$i" push -q "$(paas_remote "$run-a$i")" main >"$work/a$i-$deploys.log" 2>&1 ||
    fail "a redeploy of $run-a$i failed: $(grep -v '^\s*$' "$work/a$i-$deploys.log" | tail -n3)"
  deploys=$((deploys + 1))
  i=$((i % APPS + 1))
  [ $i -eq 1 ] && i=2
done
sleep 3
echo "daemon RSS (VmRSS): $rss_start at start; $(rss) after $deploys deploys across $APPS apps  (goal: <= 30 MB)"
exit
}
