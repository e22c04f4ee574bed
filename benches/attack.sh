#!/usr/bin/env bash
# Attacks on a running sosrouter, each bounded in count and time, on
# loopback only, and what the router must show under it.
#
#   bash benches/attack.sh invite-flood [SECONDS] [RATE]
#       One allowed source (127.0.0.1) floods non-emergency INVITEs at RATE
#       a second (default 15,000) for SECONDS (default 60), never
#       acknowledging anything, while a carrier on 127.0.0.2 places 911 calls
#       at 5 a second for the same time to a screening center that answers.
#       Must show: every 911 call completes, and the router's RSS stays
#       within twice its idle value.
#
# The router is the release build (SOSROUTER_BIN to use another binary),
# run on free ports with the lab configuration. Every process started here
# is recorded by PID and ended on exit; nothing else is touched. Exit 0:
# the attack ran (its verdict is printed, PASS or FAIL); 1: it failed its
# target; 2: a usage or setup error.

set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

PIDS=()
WORK=$(mktemp -d /tmp/sosrouter-attack.XXXXXX)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "attack: $1 is needed ($2)" >&2; exit 2; }; }

router_bin() {
    if [ -n "${SOSROUTER_BIN:-}" ]; then
        echo "$SOSROUTER_BIN"
        return
    fi
    cargo build --release --locked --quiet >&2
    echo "target/release/sosrouter"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_router BIN: the lab configuration on free ports, trunks on
# $PSAP $SCREENING $TEST $LAST; sets ROUTER_PID, SIP_PORT, ADMIN_PORT.
start_router() {
    SIP_PORT=$(free_port); ADMIN_PORT=$(free_port); METRICS_PORT=$(free_port)
    sed -e "s#127.0.0.1:5060#127.0.0.1:$SIP_PORT#g" \
        -e "s#127.0.0.1:8080#127.0.0.1:$ADMIN_PORT#" \
        -e "s#127.0.0.1:9090#127.0.0.1:$METRICS_PORT#" \
        -e "s#127.0.0.1:5070#127.0.0.1:$PSAP#" \
        -e "s#127.0.0.1:5080#127.0.0.1:$SCREENING#" \
        -e "s#127.0.0.1:5090#127.0.0.1:$TEST#" \
        -e "s#127.0.0.1:5095#127.0.0.1:$LAST#" \
        -e "s#data_dir = \"./sosrouter-data\"#data_dir = \"$WORK/data\"#" \
        config/loopback.toml >"$WORK/router.toml"
    RUST_LOG=warn "$1" run --config "$WORK/router.toml" >"$WORK/router.log" 2>&1 &
    ROUTER_PID=$!
    PIDS+=("$ROUTER_PID")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null 2>&1 && return
        kill -0 "$ROUTER_PID" 2>/dev/null || { cat "$WORK/router.log" >&2; exit 2; }
        sleep 0.1
    done
    echo "attack: the router did not start" >&2
    exit 2
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

invite_flood() {
    local seconds=${1:-60} rate=${2:-15000}
    need sipp "Debian package sip-tester"
    [ "$seconds" -ge 5 ] && [ "$seconds" -le 600 ] || usage
    local bin
    bin=$(router_bin)
    PSAP=$(free_port); SCREENING=$(free_port); TEST=$(free_port); LAST=$(free_port)
    local calls=$((seconds * 5))
    # The screening center: answers the probes and every 911 call.
    sipp -sn uas -aa -i 127.0.0.1 -p "$SCREENING" -t u1 -nostdin \
        -timeout "$((seconds + 60))s" -trace_stat -stf "$WORK/uas.csv" \
        >"$WORK/uas.out" 2>&1 &
    PIDS+=("$!")
    start_router "$bin"
    sleep 2
    local idle
    idle=$(rss_kb "$ROUTER_PID")
    echo "router pid $ROUTER_PID, idle RSS ${idle} kB; flood ${rate}/s for ${seconds} s"
    python3 benches/sipflood.py --to "127.0.0.1:$SIP_PORT" --bind 127.0.0.1 \
        --rate "$rate" --seconds "$seconds" >"$WORK/flood.json" &
    local flood=$!
    PIDS+=("$flood")
    # The carrier's 911 calls, from another address, at 5 a second.
    sipp "127.0.0.2:0" -sn uac -s 911 -i 127.0.0.2 -p 0 -t u1 \
        "127.0.0.1:$SIP_PORT" -r 5 -m "$calls" -d 1000 -nostdin \
        -timeout "$((seconds + 60))s" -trace_stat -stf "$WORK/uac.csv" \
        >"$WORK/uac.out" 2>&1 &
    local uac=$!
    PIDS+=("$uac")
    local peak=$idle now
    while kill -0 "$flood" 2>/dev/null || kill -0 "$uac" 2>/dev/null; do
        now=$(rss_kb "$ROUTER_PID" 2>/dev/null || echo 0)
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 1
    done
    wait "$uac" || true
    wait "$flood" || true
    local ok failed
    ok=$(tail -1 "$WORK/uac.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$WORK/uac.csv" | awk -F';' '{print $18}')
    echo "flood: $(cat "$WORK/flood.json")"
    echo "911 calls: $calls placed, ${ok:-?} completed, ${failed:-?} failed"
    echo "router RSS: idle ${idle} kB, peak ${peak} kB ($((peak * 100 / idle))% of idle)"
    if [ "${ok:-0}" = "$calls" ] && [ "${failed:-1}" = "0" ] && [ "$peak" -le $((idle * 2)) ]; then
        echo "PASS"
    else
        echo "FAIL"
        return 1
    fi
}

case "${1:-}" in
    invite-flood) shift; invite_flood "$@" ;;
    *) usage ;;
esac
