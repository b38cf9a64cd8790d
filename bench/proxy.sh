#!/usr/bin/env bash
# Proxy benchmark: paas's proxy next to nginx as a reverse proxy, in front of
# the same backend (nginx answering a static "ok"), plus a 701-byte static file
# served by each. Runs the contenders alternately (A B A B …) and prints the
# median of each; compare only figures from the same run (shared, noisy VM).
#
#   bench/proxy.sh                 # ROUNDS=2 DURATION=10s CONNS=32 THREADS=2
#   ROUNDS=3 DURATION=5s bench/proxy.sh
#
# Needs nginx and wrk (installed with apt-get when missing and run as root).
# wrk shares the machine's cores with the servers: treat figures above ~50k
# req/s as client-bound.
set -euo pipefail

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
# Free ports picked at random: other sessions on this machine listen too.
USED=" $(ss -ltnH | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        case "$USED" in *" $port "*) continue ;; esac
        USED+="$port "
        echo "$port"
        return
    done
}
BACKEND_PORT=$(free_port)   # nginx: return 200 "ok"
NGINX_PORT=$(free_port)     # nginx: proxy_pass to backend, /static/ from disk
PAAS_PORT=$(free_port)      # paas proxy: route to backend, /static/ from disk

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "== installing nginx and wrk"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
NGINX=$(command -v nginx)

WORK=$(mktemp -d)
chmod 755 "$WORK"   # nginx workers run as an unprivileged user
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the proxy (release)"
BIN=$(cargo test --release --lib --no-run 2>&1 | sed -n 's/.*Executable unittests .*(\(.*\)).*/\1/p' | head -1)
[ -x "$BIN" ] || { echo "could not find the test binary" >&2; exit 1; }

mkdir -p "$WORK/static" "$WORK/logs"
head -c 701 /dev/zero | tr '\0' 'a' >"$WORK/static/file.0123456789ab.css"

# One nginx per role, so the front's memory and CPU are its own.
write_nginx() { # name workers server-block
    cat >"$WORK/$1.conf" <<EOF
worker_processes $2;
pid $WORK/$1.pid;
error_log $WORK/logs/$1.error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    types { text/css css; }
    client_body_temp_path $WORK/$1.body;
    proxy_temp_path $WORK/$1.proxy;
    fastcgi_temp_path $WORK/$1.fcgi;
    uwsgi_temp_path $WORK/$1.uwsgi;
    scgi_temp_path $WORK/$1.scgi;
    $3
}
EOF
}
write_nginx backend 1 "server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 'ok'; } }"
write_nginx front auto "
    upstream app { server 127.0.0.1:$BACKEND_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /static/ { alias $WORK/static/; expires max; }
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }"
"$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
"$NGINX" -p "$WORK" -c "$WORK/front.conf" & FRONT_PID=$!; PIDS+=($FRONT_PID)
PAAS_BENCH_LISTEN=127.0.0.1:$PAAS_PORT PAAS_BENCH_BACKEND=127.0.0.1:$BACKEND_PORT \
PAAS_BENCH_STATIC=$WORK/static \
    "$BIN" proxy::tests::bench_server --ignored --exact --nocapture >"$WORK/logs/paas.log" 2>&1 &
PAAS_PID=$!; PIDS+=($PAAS_PID)

sleep 0.5
for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a server failed to start" >&2; cat "$WORK"/logs/*; exit 1; }
done
for port in $BACKEND_PORT $NGINX_PORT $PAAS_PORT; do
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    curl -fs -o /dev/null "http://127.0.0.1:$port/" || { echo "port $port did not come up" >&2; cat "$WORK"/logs/*; exit 1; }
done
curl -fsS -o /dev/null "http://127.0.0.1:$PAAS_PORT/static/file.0123456789ab.css"

# RSS in MB of a process and its children (nginx master + workers).
rss_mb() {
    local total=0 pid
    for pid in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    echo "$((total / 1024))"
}

# Prints "req/s p50 p99" for one wrk run; latencies in ms.
run_wrk() {
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx/ { bad = $NF }
        /^Requests\/sec/ { rps = $2 }
        END { if (bad) printf "WARNING: %s non-2xx responses\n", bad > "/dev/stderr";
              printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

declare -A RESULTS
CASES=("direct:http://127.0.0.1:$BACKEND_PORT/"
       "nginx-proxy:http://127.0.0.1:$NGINX_PORT/"
       "paas-proxy:http://127.0.0.1:$PAAS_PORT/"
       "nginx-static:http://127.0.0.1:$NGINX_PORT/static/file.0123456789ab.css"
       "paas-static:http://127.0.0.1:$PAAS_PORT/static/file.0123456789ab.css")

echo "== wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, alternating"
for round in $(seq "$ROUNDS"); do
    for case in "${CASES[@]}"; do
        name=${case%%:*}; url=${case#*:}
        result=$(run_wrk "$url")
        RESULTS[$name]+="$result"$'\n'
        printf '  round %s %-13s %s\n' "$round" "$name" "$result"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
printf '%-13s %10s %9s %9s\n' case "req/s" "p50 ms" "p99 ms"
for case in "${CASES[@]}"; do
    name=${case%%:*}
    col() { printf '%s' "${RESULTS[$name]}" | awk -v c="$1" 'NF { print $c }' | median; }
    printf '%-13s %10s %9s %9s\n' "$name" "$(col 1)" "$(col 2)" "$(col 3)"
done
echo
echo "resident memory after the runs: paas proxy $(rss_mb $PAAS_PID) MB, nginx front $(rss_mb $FRONT_PID) MB"
