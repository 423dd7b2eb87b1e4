#!/usr/bin/env bash
# Streaming measurement: a SIZE_MIB upload and download with curl, directly to
# the reference backend (plain HTTP) and through the gateway (TLS 1.3,
# HTTP/1.1, API key), with the gateway's peak RSS sampled every 50 ms.
# Usage: benches/stream.sh [SIZE_MIB]   (release binaries are built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
[ -x target/release/mft-gateway ] && [ -x target/release/mft-backend ] || cargo build --release --locked -p mft-gateway -p mft-backend
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

bport=$(free_port); gport=$(free_port); aport=$(free_port)
target/release/mft-backend --listen 127.0.0.1:$bport --data-dir "$work/backend" >/dev/null 2>&1 &
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/gateway.toml" <<TOML
[server]
https_listen = "127.0.0.1:$gport"
admin_listen = "127.0.0.1:$aport"
tls_cert = "cert.pem"
tls_key = "key.pem"
data_dir = "data"
[backend]
url = "http://127.0.0.1:$bport"
[logging]
access_log = false
level = "warn"
TOML
key=$(target/release/mft-gateway keys create --name bench --scopes files:read,files:write --json --config "$work/gateway.toml" | sed -E 's/.*"key":"([^"]+)".*/\1/')
target/release/mft-gateway run --config "$work/gateway.toml" 2>"$work/gateway.log" &
gpid=$!
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$gport/healthz" >/dev/null && break; sleep 0.1; done

head -c $((size_mib << 20)) /dev/urandom > "$work/src.bin"
sum=$(sha256sum "$work/src.bin" | cut -d' ' -f1)
peak=0
sample() { while kill -0 $gpid 2>/dev/null; do r=$(awk '/VmRSS/{print $2}' /proc/$gpid/status); [ "$r" -gt "$peak" ] && peak=$r && echo $peak > "$work/peak"; sleep 0.05; done; }
idle_rss=$(awk '/VmRSS/{print $2}' /proc/$gpid/status)
sample & sampler=$!

mbps() { python3 -c "print(f'{$size_mib/$1:.0f}')"; }
t() { local s=$(date +%s.%N); "$@" >/dev/null; python3 -c "import time;print(f'{time.time()-$s:.3f}')"; }

up_direct=$(t curl -sS --fail -H "X-Filename: direct.bin" -X POST -T "$work/src.bin" -o "$work/up_direct.json" "http://127.0.0.1:$bport/api/v1/files")
up_gw=$(t curl -sS --fail --http1.1 --cacert "$work/cert.pem" -H "X-API-Key: $key" -H "X-Filename: gw.bin" -X POST -T "$work/src.bin" -o "$work/up_gw.json" "https://127.0.0.1:$gport/api/v1/files")
id=$(sed -E 's/.*"id":"([^"]+)".*/\1/' "$work/up_gw.json")
grep -q "$sum" "$work/up_gw.json" || { echo "upload checksum mismatch"; exit 1; }
down_direct=$(t curl -sS --fail -o "$work/d1.bin" "http://127.0.0.1:$bport/api/v1/files/$id/content")
down_gw=$(t curl -sS --fail --http1.1 --cacert "$work/cert.pem" -H "X-API-Key: $key" -o "$work/d2.bin" "https://127.0.0.1:$gport/api/v1/files/$id/content")
[ "$(sha256sum < "$work/d2.bin" | cut -d' ' -f1)" = "$sum" ] || { echo "download checksum mismatch"; exit 1; }
kill $sampler 2>/dev/null || true
peak=$(cat "$work/peak" 2>/dev/null || echo "$idle_rss")

echo "| transfer ($size_mib MiB) | direct to backend (HTTP) | through gateway (TLS 1.3) |"
echo "|---|---|---|"
echo "| upload | $(mbps $up_direct) MiB/s | $(mbps $up_gw) MiB/s |"
echo "| download | $(mbps $down_direct) MiB/s | $(mbps $down_gw) MiB/s |"
echo
echo "gateway RSS: idle $((idle_rss / 1024)) MiB, peak $((peak / 1024)) MiB during the transfers"
