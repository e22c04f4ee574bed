#!/usr/bin/env bash
# Call records when the router is killed: SIPp places calls that stay up
# (answered, held HOLD_MS before the BYE), the router is killed with
# SIGKILL while they are up, and the script counts the calls the router
# had routed (its `routing` log lines) against the records the database
# holds. Then it starts the router again on the same database and waits
# for the records left `open` to be closed as `interrupted`.
#
#   bash benches/records_crash.sh      999 calls at 50/s, 10 s each, the
#                                      kill 15 s in; about 45 s in all
#
# Environment: SOSROUTER_BIN (default: cargo build, target/debug), CALLS,
# RATE (calls/s), HOLD_MS, KILL_AFTER_S, KEEP=1 to keep the work directory.
# What it must show: `lost 0` (a call routed in the last 50 ms before the
# kill may be missing: the writer's batch interval), and after the
# restart every record `open` at the kill closed as `interrupted`.
# Loopback only; every process started is ended by its PID. Needs sipp and
# sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-999}
RATE=${RATE:-50}
HOLD_MS=${HOLD_MS:-10000}
KILL_AFTER_S=${KILL_AFTER_S:-15}

for tool in sipp sqlite3 python3; do
  command -v "$tool" >/dev/null || { echo "records_crash: $tool is needed" >&2; exit 2; }
done
if [ -z "${SOSROUTER_BIN:-}" ]; then
  cargo build -q
  SOSROUTER_BIN=${CARGO_TARGET_DIR:-target}/debug/sosrouter
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sosrouter-crash.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}
router_port=$(free_port)
trunk_port=$(free_port)
caller_port=$(free_port)

# Every trunk is the one SIPp answering, whatever route a call takes.
sed -e "s/127.0.0.1:5060/127.0.0.1:$router_port/g" \
    -e "s/127.0.0.1:50[789][05]/127.0.0.1:$trunk_port/g" \
    -e "s|^data_dir = .*|data_dir = \"$work/db\"|" \
    -e '/^\[admin\]/,/^\[database\]/{/^\[database\]/!d}' \
    -e '/^\[metrics\]/,$d' \
    config/loopback.toml > "$work/router.toml"
sed 's/@CHECK@//' tests/sipp/uas.xml > "$work/uas.xml"
sed -e 's/@CHECK@//' -e "s/@HOLD_MS@/$HOLD_MS/" tests/sipp/uac_hold.xml > "$work/uac.xml"

start_router() {
  : >"$work/router-$1.log"
  RUST_LOG=info "$SOSROUTER_BIN" run --config "$work/router.toml" 2>"$work/router-$1.log" &
  router=$!
  pids+=("$router")
  for _ in $(seq 1 100); do
    grep -q "listening sip udp" "$work/router-$1.log" && return 0
    sleep 0.1
  done
  echo "records_crash: the router did not start" >&2
  cat "$work/router-$1.log" >&2
  exit 1
}
count() { sqlite3 "$work/db/sosrouter.db" "SELECT COUNT(*) FROM call_records WHERE $1"; }

start_router 1
(cd "$work" && exec sipp -sf uas.xml -i 127.0.0.1 -p "$trunk_port" -m "$CALLS" \
  -timeout 120s -nostdin >/dev/null 2>&1) &
pids+=("$!")
sleep 0.3
(cd "$work" && exec sipp "127.0.0.1:$router_port" -sf uac.xml -s 911 -key caller +12125550142 \
  -i 127.0.0.1 -p "$caller_port" -m "$CALLS" -r "$RATE" -timeout 120s -nostdin \
  >/dev/null 2>&1) &
pids+=("$!")

sleep "$KILL_AFTER_S"
kill -KILL "$router"
wait "$router" 2>/dev/null || true
routed=$(grep -c ': routing ' "$work/router-1.log" || true)
stored=$(count "1=1")
open=$(count "outcome = 'open'")
ended=$(count "outcome <> 'open'")
echo "killed ${KILL_AFTER_S} s in: calls routed $routed, records stored $stored (open $open, over $ended), lost $((routed - stored))"

start_router 2
closed=0
for _ in $(seq 1 60); do
  closed=$(count "outcome = 'interrupted'")
  [ "$closed" -ge "$open" ] && [ "$(count "outcome = 'open'")" -eq 0 ] && break
  sleep 1
done
line=$(grep 'left open by a router that stopped' "$work/router-2.log" | head -n 1 || true)
echo "after the restart: interrupted $closed, still open $(count "outcome = 'open'")"
echo "log: ${line:-none}"
