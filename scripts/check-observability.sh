#!/usr/bin/env bash
# The gateway's metrics checked by a real Prometheus, everything on loopback:
#   1. a gateway with a paused connection holding 3 events and a destination whose breaker
#      is open (its receiver is a closed port);
#   2. Prometheus scraping it every second; its query API must show both;
#   3. `promtool check metrics` on a scrape;
#   4. every query of every dashboard run through Prometheus's query API: none may fail, and
#      none may name a metric the gateway does not export.
# Needs: target/release/fasthook, prometheus, promtool, curl, jq (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

FASTHOOK=${FASTHOOK:-target/release/fasthook}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "check-observability: $*" >&2
  for log in "$work"/*.log; do
    echo "--- $log" >&2
    tail -n 20 "$log" >&2 || true
  done
  exit 1
}

# A free loopback port (the kernel's choice; taken again a moment later).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Polls `$1` (a command) until it succeeds, for at most `$2` seconds.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

gw_port=$(free_port)
rx_port=$(free_port)
closed_port=$(free_port) # nothing listens here: attempts are refused
prom_port=$(free_port)
gw="http://127.0.0.1:$gw_port"
key="fhp_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
team="tm_observability"

"$FASTHOOK" dev-receiver --listen "127.0.0.1:$rx_port" >"$work/receiver.log" 2>&1 &
pids+=($!)
FASTHOOK_LISTEN="127.0.0.1:$gw_port" FASTHOOK_DATA_DIR="$work/data" FASTHOOK_API_KEY="$key" \
  FASTHOOK_TEAM_ID="$team" FASTHOOK_LOG=warn "$FASTHOOK" serve >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for "curl -fsS $gw/readyz" 30 || fail "the gateway did not become ready"

api() { # METHOD PATH [JSON]
  curl -fsS -X "$1" "$gw$2" -H "authorization: Bearer $key" -H "x-team-id: $team" \
    -H 'content-type: application/json' ${3:+--data "$3"}
}
id_of() { jq -r .id; }

# A paused connection holding three events, beside a sibling that delivers them.
src=$(api POST /v1/sources '{"name":"obs-src"}' | id_of)
des=$(api POST /v1/destinations "{\"name\":\"obs-dest\",\"url\":\"http://127.0.0.1:$rx_port/hook\"}" | id_of)
web=$(api POST /v1/connections "{\"name\":\"obs-web\",\"source_id\":\"$src\",\"destination_id\":\"$des\"}" | id_of)
api POST /v1/connections "{\"name\":\"obs-sibling\",\"source_id\":\"$src\",\"destination_id\":\"$des\"}" >/dev/null
api PUT "/v1/connections/$web/pause" >/dev/null
for i in 1 2 3; do
  curl -fsS -X POST "$gw/e/$src" -H 'content-type: application/json' --data "{\"n\":$i}" >/dev/null
done

# A breaker opened by one refused attempt.
bad_src=$(api POST /v1/sources '{"name":"obs-bad"}' | id_of)
bad_des=$(api POST /v1/destinations "{\"name\":\"obs-bad\",\"url\":\"http://127.0.0.1:$closed_port/hook\",\"circuit\":{\"failure_threshold\":1,\"cooldown_seconds\":3600}}" | id_of)
api POST /v1/connections "{\"name\":\"obs-bad\",\"source_id\":\"$bad_src\",\"destination_id\":\"$bad_des\",\"rules\":[{\"type\":\"retry\",\"strategy\":\"linear\",\"count\":0,\"interval\":1000}]}" >/dev/null
curl -fsS -X POST "$gw/e/$bad_src" -H 'content-type: application/json' --data '{"n":0}' >/dev/null
wait_for "api GET /v1/destinations/$bad_des/circuit | jq -e '.state == \"open\"'" 30 ||
  fail "the breaker did not open"

# promtool on a scrape.
curl -fsS "$gw/metrics" >"$work/scrape.txt"
promtool check metrics <"$work/scrape.txt" || fail "promtool check metrics found problems"

# A real Prometheus scraping the gateway.
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fasthook
    static_configs:
      - targets: ["127.0.0.1:$gw_port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_for "curl -fsS $prom/-/ready" 60 || fail "Prometheus did not become ready"

# The value of an instant query's first sample, or nothing.
query() {
  curl -fsS -G "$prom/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}
wait_for "[ \"\$(query 'fasthook_events_hold{connection_id=\"$web\"}')\" = 3 ]" 60 ||
  fail "Prometheus never saw 3 held events on $web"
wait_for "[ \"\$(query 'fasthook_circuit_state{destination_id=\"$bad_des\",state=\"open\"}')\" = 1 ]" 30 ||
  fail "Prometheus never saw the open breaker of $bad_des"
echo "Prometheus sees 3 held events and the open breaker"

# Every dashboard query, with Grafana's variables given values.
exported=$(grep -v '^#' "$work/scrape.txt" | sed -E 's/[{ ].*//' | sort -u)
checked=0
for dashboard in dashboards/*.json; do
  while IFS= read -r expr; do
    promql=${expr//\$__rate_interval/1m}
    promql=${promql//\$destination_id/$bad_des}
    answer=$(curl -sS -G "$prom/api/v1/query" --data-urlencode "query=$promql")
    [ "$(jq -r .status <<<"$answer")" = success ] ||
      fail "$dashboard: \`$expr\` failed: $(jq -r .error <<<"$answer")"
    for name in $(grep -oE 'fasthook_[a-z_]+' <<<"$promql" | sort -u); do
      grep -qx "$name" <<<"$exported" || fail "$dashboard: \`$expr\` names $name, which /metrics does not export"
    done
    checked=$((checked + 1))
  done < <(jq -r '.. | objects | (.expr?, (.definition? // empty)) | strings' "$dashboard" |
    grep -v '^label_values' || true)
done
((checked > 0)) || fail "no dashboard queries found"
echo "check-observability: ok ($checked dashboard queries)"
