#!/usr/bin/env bash
# A real full disk (R12), on a small tmpfs mounted for the run (needs root, as in CI):
#   1. the release gateway on a 32 MiB filesystem, one paused connection; filled with requests
#      (and a filler file) until ingress answers 503;
#   2. on the full disk: every answer 503 (never 200), /readyz 503;
#   3. the filler removed: ingress answers 200 again within 60 s, in the same process;
#   4. the ledger: the connection holds exactly the events answered 200.
# Without the right to mount (not root), it says so and stops: `cargo test`'s
# `disk_full` test covers the same path with the store's test switch.
set -euo pipefail
cd "$(dirname "$0")/.."

FASTHOOK=${FASTHOOK:-target/release/fasthook}
FASTHOOK=$(realpath "$FASTHOOK")
mnt=$(mktemp -d)
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  umount "$mnt" 2>/dev/null || true
  rm -rf "$mnt" "$work"
}
trap cleanup EXIT

if ! mount -t tmpfs -o size=32m tmpfs "$mnt" 2>/dev/null; then
  echo "check-disk-full: cannot mount a tmpfs here (not root?); the disk_full integration test covers this with the store's test switch"
  exit 0
fi

fail() {
  echo "check-disk-full: $*" >&2
  tail -n 30 "$work/gateway.log" >&2 || true
  exit 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
key="fhp_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
FASTHOOK_DATA_DIR="$mnt/data" FASTHOOK_LISTEN="127.0.0.1:$port" FASTHOOK_TEAM_ID=tm_disk \
  FASTHOOK_API_KEY="$key" FASTHOOK_LOG=warn "$FASTHOOK" serve >"$work/gateway.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/readyz" >/dev/null || fail "the gateway did not start"

api() { curl -s -H "authorization: Bearer $key" -H "x-team-id: tm_disk" -H "content-type: application/json" "$@"; }
src=$(api "$base/v1/sources" -d '{"name":"disk"}' | jq -r .id)
dst=$(api "$base/v1/destinations" -d '{"name":"disk","url":"http://127.0.0.1:9/hook"}' | jq -r .id)
conn=$(api "$base/v1/connections" -d "{\"name\":\"disk\",\"source_id\":\"$src\",\"destination_id\":\"$dst\"}" | jq -r .id)
api -X PUT "$base/v1/connections/$conn/pause" >/dev/null

# Leave about 6 MiB for the gateway to fill.
free_kib=$(df --output=avail -k "$mnt" | tail -1)
dd if=/dev/zero of="$mnt/filler" bs=1K count=$((free_kib - 6144)) status=none

body=$(head -c 300 /dev/zero | tr '\0' 'a')
accepted=0
refused=0
for i in $(seq 200000); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    "$base/e/$src" -d "{\"i\":$i,\"pad\":\"$body\"}")
  case "$code" in
    200) accepted=$((accepted + 1)) ;;
    503) refused=$((refused + 1)); [ "$refused" -ge 20 ] && break ;;
    *) fail "request $i answered $code" ;;
  esac
done
[ "$refused" -ge 20 ] || fail "the disk never filled ($accepted accepted)"
echo "check-disk-full: $accepted accepted, then 503s on a full disk"
for i in 1 2 3 4 5; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' "$base/e/$src" -d '{"full":1}')
  [ "$code" = 503 ] || fail "answered $code on a full disk"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")
[ "$code" = 503 ] || fail "/readyz answered $code on a full disk"

rm -f "$mnt/filler"
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' "$base/e/$src" -d '{"after":1}')" = 200 ]; do
  [ $SECONDS -lt $deadline ] || fail "ingress did not take requests again within 60 s of space returning"
  sleep 0.5
done
accepted=$((accepted + 1))
kill -0 "$pid" || fail "the gateway process is gone"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")
[ "$code" = 200 ] || fail "/readyz answered $code after space returned"

held=$(api "$base/v1/metrics/events?connection_id=$conn&granularity=1h&measures%5B%5D=hold_count" |
  jq '[.data[].metrics.hold_count] | add')
[ "$held" = "$accepted" ] || fail "the connection holds $held events; $accepted were answered 200"
if grep -q "restarting in place" "$work/gateway.log"; then how="sled failed and the store was reopened by a restart in place"; else how="only the body log failed and it writes again"; fi
echo "check-disk-full: recovered ($how); the connection holds all $held accepted events"
