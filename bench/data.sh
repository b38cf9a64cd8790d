#!/usr/bin/env bash
# Data benchmark: backups and restores through paas's API, next to the plain
# tools doing the same copy (sqlite3 .backup; pg_dump -Fc in a one-off
# container), plus the PostgreSQL server's cold start and idle memory.
# Prints figures; asserts nothing. Needs what the tests need (bash
# tests/setup.sh, as root) and the data routes wired into the daemon.
#   bash bench/data.sh                     # SQLITE_MB=50 PG_ROWS=200000
#   SQLITE_MB=200 PG_ROWS=1000000 bash bench/data.sh
#   BIN=target/debug/paas bash bench/data.sh   # skip the release build
#   SQLITE_MB=100 MEDIA_MB=200 bash bench/data.sh   # issue 14's offsite figure
# With moto installed (tests/setup.sh), the SQLite backup is also timed with
# its encrypted offsite copy (moto's S3 server on this machine, real HTTP),
# and a restore drill of it.
set -euo pipefail
cd "$(dirname "$0")/.."
SQLITE_MB=${SQLITE_MB:-50}
PG_ROWS=${PG_ROWS:-200000}
MEDIA_MB=${MEDIA_MB:-20}
MOTO=${PAAS_TEST_MOTO:-/opt/paas-test/moto/bin/moto_server}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin paas
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/paas
fi
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3 (or bash tests/setup.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/paas-bench.XXXXXX)
data=$work/data
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); ADMIN=$(port)
sapp=bench-sq-$RANDOM
papp=bench-pg-$RANDOM
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  [ -n "${moto:-}" ] && kill "$moto" 2>/dev/null || true
  [ -n "${server:-}" ] && docker rm -f -v "$server" >/dev/null 2>&1 || true
  for app in "$sapp" "$papp"; do
    docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
    docker network rm "paas-$app" >/dev/null 2>&1 || true
  done
  [ -n "${server:-}" ] && docker network rm "paas_postgres_${server##*-}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
PAAS_LOG=warn "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN \
  --domain localhost >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
sleep 1
token=$(cat "$data/admin.token")
api() { # METHOD PATH [JSON] -> body; fails loudly on non-2xx
  local out code
  out=$(curl -s -w '\n%{http_code}' -X "$1" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "http://127.0.0.1:$ADMIN$2")
  code=${out##*$'\n'}; out=${out%$'\n'*}
  [ "${code:0:1}" = 2 ] || { echo "$1 $2: HTTP $code $out" >&2; tail -n 20 "$work/daemon.log" >&2; exit 1; }
  printf '%s' "$out"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
now() { date +%s.%N; }
secs() { printf '%.2f s' "$(echo "$2 - $1" | bc)"; }

# Apps without a deploy: a push to a non-deploying branch creates them.
cp -r tests/fixtures/not-django "$work/proj"
(cd "$work/proj" && git init -q --initial-branch=main &&
  git -c user.name=b -c user.email=b@b add -A && git -c user.name=b -c user.email=b@b commit -qm v1 &&
  for app in "$sapp" "$papp"; do
    git push -q "http://paas:$token@127.0.0.1:$ADMIN/$app.git" main:feature >/dev/null 2>&1
  done)

echo "== SQLite, ${SQLITE_MB} MB"
vol=$data/apps/$sapp/data
mkdir -p "$vol/media"
python3 - "$vol/db.sqlite3" "$SQLITE_MB" <<'EOF'
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
rows = int(sys.argv[2]) * 1024 * 1024 // 1100
db.executemany("INSERT INTO notes (text) VALUES (?)", ((os.urandom(512).hex(),) for _ in range(rows)))
db.commit()
EOF
head -c $((MEDIA_MB * 1048576)) /dev/urandom > "$vol/media/upload.bin"
echo "media:                          ${MEDIA_MB} MB"
ls -l "$vol/db.sqlite3" | awk '{printf "database file:                  %.1f MB\n", $5/1048576}'
sync
t0=$(now); sqlite3 "$vol/db.sqlite3" ".backup $work/ref.sqlite3"; t1=$(now)
echo "sqlite3 .backup (reference):    $(secs "$t0" "$t1")"
t0=$(now); m=$(api POST "/api/apps/$sapp/backups"); t1=$(now)
echo "paas backup (API, + sha256):    $(secs "$t0" "$t1") (manifest: $(echo "$m" | field '["duration_ms"]') ms)"
id=$(echo "$m" | field '["id"]')
t0=$(now); api POST "/api/apps/$sapp/backups/$id/restore" "{\"confirm\":\"$sapp\"}" >/dev/null; t1=$(now)
echo "paas restore (API, verify+copy): $(secs "$t0" "$t1")"

if [ -x "$MOTO" ]; then
  echo "== Offsite: the same backup encrypted (age) and uploaded to moto's S3 server here"
  S3P=$(port)
  "$MOTO" -H 127.0.0.1 -p "$S3P" >/dev/null 2>&1 &
  moto=$!
  for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$S3P/" >/dev/null && break; sleep 0.2; done
  curl -s -X PUT "http://127.0.0.1:$S3P/bench" >/dev/null
  api PUT /api/backups/offsite "{\"url\":\"s3://bench/b\",\"endpoint\":\"http://127.0.0.1:$S3P\",\"access_key_id\":\"b\",\"secret_access_key\":\"b\",\"passphrase\":\"bench passphrase 123\"}" >/dev/null
  t0=$(now); m=$(api POST "/api/apps/$sapp/backups"); t1=$(now)
  echo "paas backup + offsite copy:     $(secs "$t0" "$t1") ($(echo "$m" | field '["offsite"]["status"]'), $(echo "$m" | field '["offsite"]["size"]') bytes)"
  t0=$(now); d=$(api POST /api/backups/drill "{\"app\":\"$sapp\"}"); t1=$(now)
  echo "restore drill (download, decrypt, check, scratch restore): $(secs "$t0" "$t1") (ok: $(echo "$d" | field '["drills"][0]["ok"]'))"
else
  echo "== Offsite: skipped ($MOTO missing: bash tests/setup.sh installs moto)"
fi

echo "== PostgreSQL, ${PG_ROWS} rows"
t0=$(now); api POST "/api/apps/$papp/postgres" >/dev/null; t1=$(now)
echo "pg:create, cold (start+initdb): $(secs "$t0" "$t1")"
server=$(api GET "/api/apps/$papp/postgres" | field '["server"]')
t0=$(now); api POST "/api/apps/$papp/postgres" >/dev/null; t1=$(now)
echo "pg:create, server running:      $(secs "$t0" "$t1")"
sleep 3
echo "server memory, idle:            $(docker stats --no-stream --format '{{.MemUsage}}' "$server")"
url=$(python3 - "$data/postgres/apps/$papp.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("postgres://%s:%s@%s:%d/%s" % (d["role"], d["password"], d["host"], d["port"], d["database"]))
EOF
)
docker run --rm --network "paas-$papp" postgres:17 psql -X -q "$url" -c \
  "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, $PG_ROWS) g;"
mkdir -p "$work/ref"
t0=$(now)
docker run --rm --network "paas-$papp" -v "$work/ref:/out" postgres:17 pg_dump -Fc -f /out/db.dump "$url"
t1=$(now)
echo "pg_dump one-off (reference):    $(secs "$t0" "$t1"), $(du -h "$work/ref/db.dump" | cut -f1)"
t0=$(now); m=$(api POST "/api/apps/$papp/backups"); t1=$(now)
echo "paas backup (API):              $(secs "$t0" "$t1") ($(echo "$m" | field '["size"]') bytes)"
id=$(echo "$m" | field '["id"]')
t0=$(now); api POST "/api/apps/$papp/backups/$id/restore" "{\"confirm\":\"$papp\"}" >/dev/null; t1=$(now)
echo "paas restore (pg_restore):      $(secs "$t0" "$t1")"
n=$(docker run --rm --network "paas-$papp" postgres:17 psql -X -At "$url" -c "SELECT count(*) FROM t")
echo "rows after restore:             $n"
echo "server memory, after:           $(docker stats --no-stream --format '{{.MemUsage}}' "$server")"
api DELETE "/api/apps/$papp/postgres" "{\"confirm\":\"$papp\"}" >/dev/null
