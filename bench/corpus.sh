#!/usr/bin/env bash
# The corpus benchmark: real public Django projects, pushed unmodified, each
# to a fresh daemon, as a new user would. Prints a table: case, result,
# seconds, page status, the push output's last line. Asserts nothing.
#
#   bash bench/corpus.sh                    # every case of bench/corpus.txt
#   bash bench/corpus.sh djangox bakery     # cases whose name contains a word
#   CORPUS_MIRRORS=/work/.mirror KEEP=1 bash bench/corpus.sh
#   OFFLINE_PYTHON=auto bash bench/corpus.sh   # see ok* below
#
# Needs what the tests need (bash tests/setup.sh, as root) and the corpus's
# repositories as bare git dirs in $CORPUS_MIRRORS/<owner>+<name>/repo, at the
# pinned commits (their code is not part of this repository). Push logs and
# daemon logs land in $OUT (default /tmp/paas-corpus): read them for causes.
#
# Each case pushes the pinned commit's tree as a single commit.
#
# A result is one of:
#   ok          the page answered 200 with the expected text (or, for a
#               project whose code forces HTTPS, redirected to its https URL:
#               page shows "301>https")
#   refused     the push was refused, as expected, with one sentence
#   REFUSED     refused although the project should deploy (see the log)
#   FAILED      the push failed past detection, or the page is wrong
#   missing     the repository is not fetched
#   ok*         with OFFLINE_PYTHON (a version, or auto: the nearest one at
#               or above the pinned one among those here that the project's
#               Django supports): refused first because the image of the
#               Python it pins is not here (a VPS pulls it), then deployed
#               with PYTHON_VERSION set as that sentence says
#   refused*    the same, for a case expected to be refused: the second push
#               was refused by a later stage's sentence
#   no-image    refused because the image of the Python it needs is not on
#               this machine, and none here fits (or OFFLINE_PYTHON is
#               unset): a VPS pulls it; nothing else of the project was tried
#               (a case expected to be refused counts as refused: it was,
#               with a sentence naming the fix)
#
# A case's line may end with +postgres: paas creates the app's PostgreSQL
# database (as `paas pg:create` does) before the push.
set -uo pipefail
cd "$(dirname "$0")/.."
LIST=${LIST:-bench/corpus.txt}
MIRRORS=${CORPUS_MIRRORS:-/work/.mirror}
OUT=${OUT:-/tmp/paas-corpus}
mkdir -p "$OUT"
# PAAS_BIN: a paas binary to use as it is (e.g. target/debug/paas, where a
# release build would take too long); otherwise a release build is made.
if [ -n "${PAAS_BIN:-}" ]; then
    BIN=$PAAS_BIN
else
    cargo build --release --quiet --bin paas || exit 1
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/paas
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pid=""
app=""
work=""
cleanup_case() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    pid=""
    if [ -n "$work" ] && [ -z "${KEEP:-}" ]; then
        # This case's PostgreSQL server (+postgres): the one whose data
        # folder is in this case's data dir, and its network.
        for c in $(docker ps -aq --filter label=paas.service=postgres); do
            docker inspect -f '{{range .Mounts}}{{.Source}} {{end}}' "$c" 2>/dev/null | grep -q "$work/data/" || continue
            nets=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c")
            docker rm -f "$c" >/dev/null 2>&1
            for n in $nets; do case $n in paas_postgres_*) docker network rm "$n" >/dev/null 2>&1 ;; esac; done
        done
    fi
    if [ -n "$app" ] && [ -z "${KEEP:-}" ]; then
        docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1
        docker network rm "paas-$app" >/dev/null 2>&1
        docker rmi $(docker images -q "paas/$app") >/dev/null 2>&1
        docker volume rm $(docker volume ls -q --filter "label=paas.app=$app") >/dev/null 2>&1
    fi
    [ -n "$work" ] && rm -rf "$work"
    work=""
}
trap cleanup_case EXIT

rows=()
ok=0
offline=0
noimage=0
total=0
while read -r repo commit path text rest; do
    case "$repo" in '' | '#'*) continue ;; esac
    if [ $# -gt 0 ]; then
        hit=""
        for w in "$@"; do case "$repo" in *"$w"*) hit=1 ;; esac; done
        [ -n "$hit" ] || continue
    fi
    total=$((total + 1))
    name=${repo#*/}
    vars=""
    postgres=""
    for w in $rest; do
        case $w in
        +postgres) postgres=1 ;;
        +*) echo "unknown flag $w for $repo" >&2 ;;
        *) vars="$vars $w" ;;
        esac
    done
    src=$MIRRORS/${repo/\//+}/repo
    if ! git -C "$src" cat-file -e "$commit^{commit}" 2>/dev/null; then
        rows+=("$(printf '%-44s %-8s %6s %9s  %s' "$repo" missing - - "fetch $repo at $commit")")
        continue
    fi
    app=$(echo "$name" | tr 'A-Z_.' 'a-z--' | cut -c1-20 | sed 's/-*$//')-$RANDOM
    work=$(mktemp -d /tmp/paas-corpus-case.XXXXXX)
    data=$work/data
    HTTP=$(port)
    ADMIN=$(port)
    PAAS_LOG=info "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
        --domain localhost --build-network host >"$OUT/$name.daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
    token=$(cat "$data/admin.token")
    api() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
    for _ in $(seq 1 50); do [ "$(api "http://127.0.0.1:$ADMIN/api/apps")" = 200 ] && break; sleep 0.1; done
    # The pinned commit's tree as one commit: fetched snapshots may lack
    # objects of old history, which a push of the whole history would need.
    git clone -q --no-checkout "$src" "$work/proj" &&
        git -C "$work/proj" checkout -q --orphan corpus "$commit" &&
        git -C "$work/proj" -c user.name=corpus -c user.email=corpus@localhost \
            commit -q -m "$repo at $commit"
    if [ -n "$vars$postgres" ]; then
        api -X POST -d "{\"name\":\"$app\"}" "http://127.0.0.1:$ADMIN/api/apps" >/dev/null
    fi
    if [ -n "$vars" ]; then
        body=$(python3 -c 'import json,sys; print(json.dumps(dict(kv.split("=",1) for kv in sys.argv[1:])))' $vars)
        api -X PATCH -d "$body" "http://127.0.0.1:$ADMIN/api/apps/$app/config" >/dev/null
    fi
    if [ -n "$postgres" ]; then
        # pg:create: the database, its role, DATABASE_URL as a config var.
        code=$(api -X POST "http://127.0.0.1:$ADMIN/api/apps/$app/postgres")
        case $code in 2*) ;; *) echo "$repo: creating its PostgreSQL database answered $code (see $OUT/$name.daemon.log)" >&2 ;; esac
    fi
    push_once() { # $1: log file; sets pushed, secs, last
        local t0
        t0=$(date +%s.%N)
        git -C "$work/proj" push "http://paas:$token@127.0.0.1:$ADMIN/$app.git" corpus:main >"$1" 2>&1
        pushed=$?
        secs=$(printf '%.0f' "$(echo "$(date +%s.%N) - $t0" | bc)")
        last=$(grep '^remote: ' "$1" | sed 's/^remote: *//; s/\x1b\[[0-9;]*[A-Za-z]//g' | grep -v '^\s*$' | tail -n1 | cut -c1-110)
    }
    log=$OUT/$name.push.log
    push_once "$log"
    retried=""
    no_image=""
    # This machine pulls no image: a project pinning a Python whose image is
    # not here is refused with that sentence. With OFFLINE_PYTHON set, it is
    # pushed once more with PYTHON_VERSION naming one that is (the fix the
    # sentence names), so the rest of the project is still tried.
    if [ "$pushed" -ne 0 ] && grep -q 'which is not on this server and cannot be pulled' "$log"; then
        py=${OFFLINE_PYTHON:-}
        if [ "$py" = auto ]; then
            # The nearest Python at or above the pinned one among those the
            # sentence names as here (only those its Django supports), else
            # the newest of them; none: no image fits.
            wanted=$(grep -o 'Python [0-9.]* needs the base image' "$log" | head -n1 | awk '{print $2}')
            here=$(grep -o 'is on this server ([0-9., ]*)' "$log" | head -n1 | grep -o '3\.[0-9]*' | sort -t. -k2 -n)
            py=$(for v in $here; do [ "${v#3.}" -ge "${wanted#3.}" ] && echo "$v" && break; done)
            [ -n "$py" ] || py=$(echo "$here" | tail -n1)
        fi
        if [ -n "$py" ]; then
            api -X PATCH -d "{\"PYTHON_VERSION\":\"$py\"}" "http://127.0.0.1:$ADMIN/api/apps/$app/config" >/dev/null
            log=$OUT/$name.push-offline-python.log
            push_once "$log"
            retried=1
        else
            no_image=1
        fi
    fi
    want=${text//+/ }
    status=-
    if [ -n "$no_image" ] && [ "$text" != refused ]; then
        result=no-image
    elif [ "$pushed" -eq 0 ]; then
        body_file=$work/page
        read -r status location < <(curl -s -o "$body_file" -w '%{http_code} %{redirect_url}' --max-time 30 -H "Host: $app.localhost" "http://127.0.0.1:$HTTP$path")
        if [ "$text" != refused ] && [ "$status" = 200 ] && grep -qF "$want" "$body_file"; then
            result=ok${retried:+*}
        elif [ "$text" != refused ] && [ "$location" = "https://$app.localhost$path" ]; then
            # The project forces HTTPS (SECURE_SSL_REDIRECT = True in its
            # code): live, and waiting for paas's HTTPS.
            result=ok${retried:+*}
            status="$status>https"
        else
            result=FAILED
        fi
    elif [ "$text" = refused ]; then
        result=refused${retried:+*}
    elif ! grep -q 'remote: .*Installing\|remote: .*Step \|remote: .*pip install' "$log"; then
        result=REFUSED
    else
        result=FAILED
    fi
    case $result in ok | refused) ok=$((ok + 1)) ;; ok\* | refused\*) offline=$((offline + 1)) ;; no-image) noimage=$((noimage + 1)) ;; esac
    rows+=("$(printf '%-44s %-8s %6s %9s  %s' "$repo" "$result" "$secs" "$status" "$last")")
    printf '%s\n' "${rows[-1]}" >&2
    cleanup_case
    app=""
done <"$LIST"

echo
printf '%-44s %-8s %6s %9s  %s\n' case result secs page "last line of the push output"
printf '%s\n' "${rows[@]}"
echo
echo "deployed or refused as expected: $ok of $total (logs in $OUT)"
if [ -n "${OFFLINE_PYTHON:-}" ]; then
    echo "ok*, refused*: deployed, or refused as expected, with PYTHON_VERSION set (OFFLINE_PYTHON=$OFFLINE_PYTHON), the image of its own Python not being on this machine: $offline"
fi
echo "no-image: refused for want of its Python's image, none here fitting: $noimage"
echo "together: $((ok + offline + noimage)) of $total"
