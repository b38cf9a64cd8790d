#!/usr/bin/env bash
# Installs paas on this machine and starts it: builds the binary from this
# checkout, installs it to /usr/local/bin, writes /var/lib/paas/paas.toml
# (once) and a systemd unit, and starts the daemon. Idempotent: run it again
# to upgrade. Environment knobs (first install only):
#   PAAS_DOMAIN  apps are served at <app>.<domain>   (default: localhost);
#                with a real domain (its DNS, and *.<domain>, pointing here)
#                every app and paas.<domain> get certificates by ACME
#   PAAS_ACME_EMAIL  the ACME account's e-mail (the CA's expiry warnings)
#   PAAS_HTTPS   HTTPS address, or off                 (default: 0.0.0.0:443)
#   PAAS_HTTP    public proxy address                  (default: 0.0.0.0:80)
#   PAAS_ADMIN   git, API and dashboard address        (default: 127.0.0.1:8300;
#                reach it from your laptop through an SSH tunnel: it speaks
#                plain HTTP, so a wider address sends the token in clear)
set -euo pipefail

DATA_DIR=/var/lib/paas
BIN=/usr/local/bin/paas
UNIT=/etc/systemd/system/paas.service
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (su - root, then bash install.sh)"
command -v git >/dev/null || die "git is missing: apt-get install git"
command -v docker >/dev/null || die "Docker is missing: apt-get install docker.io (or Docker's own packages)"
docker info >/dev/null 2>&1 || die "the Docker engine is not running: systemctl start docker"

# The binary: built from this checkout.
if [ -f "$here/Cargo.toml" ]; then
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) to build paas from source"
  echo "==> building paas (release)"
  (cd "$here" && cargo build --release --locked --bin paas)
  install -m 0755 "${CARGO_TARGET_DIR:-$here/target}/release/paas" "$BIN.new"
  mv -f "$BIN.new" "$BIN"
else
  die "run install.sh from a paas checkout (it builds the binary from the source next to it)"
fi

mkdir -p "$DATA_DIR"
chmod 0700 "$DATA_DIR"
if [ ! -f "$DATA_DIR/paas.toml" ]; then
  cat >"$DATA_DIR/paas.toml" <<TOML
# paas configuration: the same names as the flags of \`paas serve\`.
domain = "${PAAS_DOMAIN:-localhost}"
http = "${PAAS_HTTP:-0.0.0.0:80}"
admin = "${PAAS_ADMIN:-127.0.0.1:8300}"
https = "${PAAS_HTTPS:-0.0.0.0:443}"
TOML
  if [ -n "${PAAS_ACME_EMAIL:-}" ]; then
    echo "acme-email = \"$PAAS_ACME_EMAIL\"" >>"$DATA_DIR/paas.toml"
  fi
fi

if [ -d /run/systemd/system ]; then
  cat >"$UNIT" <<UNITEOF
[Unit]
Description=paas: git push deploys for Django
After=network-online.target docker.service
Requires=docker.service

[Service]
ExecStart=$BIN serve --data-dir $DATA_DIR
Restart=always
RestartSec=1
KillSignal=SIGTERM
TimeoutStopSec=60
Environment=PAAS_LOG=info

[Install]
WantedBy=multi-user.target
UNITEOF
  systemctl daemon-reload
  systemctl enable paas >/dev/null 2>&1
  systemctl restart paas
  echo "==> paas runs as the systemd service paas (journalctl -u paas -f)"
else
  # No systemd (a container, say): run it in the background instead.
  if pkill -x paas 2>/dev/null; then
    # SIGTERM lets in-flight deploys finish (up to 75 s): wait for it.
    for _ in $(seq 1 90); do pgrep -x paas >/dev/null || break; sleep 1; done
  fi
  nohup "$BIN" serve --data-dir "$DATA_DIR" >>"$DATA_DIR/paas.log" 2>&1 &
  echo "==> no systemd here: paas started in the background (log: $DATA_DIR/paas.log)"
fi

for _ in $(seq 1 50); do [ -f "$DATA_DIR/admin.token" ] && break; sleep 0.2; done
[ -f "$DATA_DIR/admin.token" ] || die "paas did not start; see journalctl -u paas or $DATA_DIR/paas.log"
token=$(cat "$DATA_DIR/admin.token")
admin=$(grep -E '^admin' "$DATA_DIR/paas.toml" | sed -E 's/.*"(.*)".*/\1/')
port=${admin##*:}
host=$(hostname -f 2>/dev/null || hostname)
# The control plane speaks plain HTTP: reach it through an SSH tunnel, so
# the token never crosses the network in clear. Remotes carry no token:
# `paas login` makes paas git's credential helper for that URL.
cat <<DONE

paas is installed. Your admin token (also in $DATA_DIR/admin.token):

  $token

The control plane (git, API, dashboard) listens on $admin, plain HTTP.
From your laptop, open an SSH tunnel to it and leave it running:

  ssh -N -L $port:127.0.0.1:$port root@$host

Then, with the paas binary on your laptop, in your Django project:

  paas login http://127.0.0.1:$port        # paste the token; git gets it from paas
  git remote add paas http://127.0.0.1:$port/myapp.git
  git push paas main

(Without the paas binary, git asks on push: user paas, password the token.)
Dashboard: http://127.0.0.1:$port/ through the tunnel; log in with the token.
DONE
domain=$(grep -E '^domain' "$DATA_DIR/paas.toml" | sed -E 's/.*"(.*)".*/\1/')
https=$(grep -E '^https' "$DATA_DIR/paas.toml" | sed -E 's/.*"(.*)".*/\1/' || true)
if [ "${https:-off}" != "off" ] && [ "$domain" != "localhost" ]; then
  cat <<DONE

Over HTTPS (certificates by ACME once paas.$domain's DNS points here; paas certs shows them):

  paas login https://paas.$domain
  git remote add paas https://paas.$domain/myapp.git
  Dashboard: https://paas.$domain/
DONE
fi
case "$admin" in
  127.*|localhost:*|"[::1]:"*) ;;
  *) echo
     echo "WARNING: $DATA_DIR/paas.toml binds the control plane to $admin: the token crosses the network in clear."
     echo "         Set admin = \"127.0.0.1:$port\" there, run bash install.sh again, and use the SSH tunnel." ;;
esac
