#!/usr/bin/env bash
# TLS benchmark: paas's HTTPS listener next to nginx's, the same certificate
# (made here for `localhost`), in front of the same fast backend (nginx
# answering "ok"). Two figures each, run alternately (A B A B …), medians
# printed side by side:
#   - keep-alive HTTPS requests per second (wrk, HTTP/1.1 over TLS);
#   - new TLS handshakes per second (wrk with Connection: close: every
#     request a new connection and a full handshake).
#
#   bench/tls.sh                   # ROUNDS=2 DURATION=10s CONNS=32 THREADS=2
#
# Needs nginx, wrk and openssl (apt-get install nginx-light wrk openssl).
# wrk shares the machine's cores with the servers.
set -euo pipefail

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
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
BACKEND_PORT=$(free_port)
NGINX_PORT=$(free_port)
PAAS_PORT=$(free_port)

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
for tool in nginx wrk openssl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install nginx-light wrk openssl" >&2; exit 1; }
done
NGINX=$(command -v nginx)

WORK=$(mktemp -d)
chmod 755 "$WORK"
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

# One certificate for both: ECDSA P-256, as paas's own certificates are.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost" 2>/dev/null
chmod 644 "$WORK/key.pem"
mkdir -p "$WORK/logs"
write_nginx() { # name workers server-block
    cat >"$WORK/$1.conf" <<CONF
worker_processes $2;
pid $WORK/$1.pid;
error_log $WORK/logs/$1.error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/$1.body;
    proxy_temp_path $WORK/$1.proxy;
    fastcgi_temp_path $WORK/$1.fcgi;
    uwsgi_temp_path $WORK/$1.uwsgi;
    scgi_temp_path $WORK/$1.scgi;
    $3
}
CONF
}
write_nginx backend 1 "server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 'ok'; } }"
write_nginx front auto "
    upstream app { server 127.0.0.1:$BACKEND_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }"
"$NGINX" -p "$WORK" -c "$WORK/backend.conf" & PIDS+=($!)
"$NGINX" -p "$WORK" -c "$WORK/front.conf" & PIDS+=($!)
PAAS_BENCH_LISTEN=127.0.0.1:$PAAS_PORT PAAS_BENCH_BACKEND=127.0.0.1:$BACKEND_PORT \
PAAS_BENCH_CERT=$WORK/cert.pem PAAS_BENCH_KEY=$WORK/key.pem \
    "$BIN" proxy::tests::bench_server --ignored --exact --nocapture >"$WORK/logs/paas.log" 2>&1 &
PIDS+=($!)

for port in $NGINX_PORT $PAAS_PORT; do
    for _ in $(seq 100); do curl -fs --cacert "$WORK/cert.pem" -o /dev/null "https://localhost:$port/" && break; sleep 0.1; done
    curl -fsS --cacert "$WORK/cert.pem" -o /dev/null "https://localhost:$port/" || { echo "port $port did not come up" >&2; cat "$WORK"/logs/*; exit 1; }
done

# Prints "req/s p50" for one wrk run (latency in ms).
run_wrk() {
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" | awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        /^ +50%/ { p50 = ms($2) }
        /Non-2xx/ { bad = $NF }
        /Socket errors/ { errs = $0 }
        /^Requests\/sec/ { rps = $2 }
        END { if (bad) printf "WARNING: %s non-2xx responses\n", bad > "/dev/stderr";
              if (errs) printf "NOTE: %s\n", errs > "/dev/stderr";
              printf "%.0f %.3f\n", rps, p50 }'
}

declare -A RESULTS
echo "== wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, alternating"
for round in $(seq "$ROUNDS"); do
    for who in nginx paas; do
        port=$NGINX_PORT; [ "$who" = paas ] && port=$PAAS_PORT
        ka=$(run_wrk "https://localhost:$port/")
        hs=$(run_wrk -H "Connection: close" "https://localhost:$port/")
        RESULTS[$who-keepalive]+="$ka"$'\n'
        RESULTS[$who-handshake]+="$hs"$'\n'
        printf '  round %s %-6s keep-alive %s  new handshakes %s\n' "$round" "$who" "$ka" "$hs"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { printf '%s' "${RESULTS[$1]}" | awk -v c="$2" 'NF { print $c }' | median; }
echo
printf '%-22s %12s %12s %8s\n' "median" "nginx" "paas" "paas/nginx"
for kind in keepalive handshake; do
    n=$(col "nginx-$kind" 1); p=$(col "paas-$kind" 1)
    label="HTTPS req/s ($kind)"; [ "$kind" = handshake ] && label="new handshakes/s"
    printf '%-22s %12s %12s %8s\n' "$label" "$n" "$p" "$(awk -v a="$p" -v b="$n" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
done
