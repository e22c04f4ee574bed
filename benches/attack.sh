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
#   bash benches/attack.sh huge-location [CALLS] [MEGABYTES]
#       A location server on 127.0.0.1 answers every HELD request with
#       MEGABYTES (default 100) of filler, every other answer announcing its
#       length and the rest running until the connection closes; CALLS
#       (default 10, at most 50) emergency INVITEs from an allowed source
#       carry a Geolocation reference to it, all at once. The server is
#       listed in emergency.location_servers (loopback is refused
#       otherwise: it stands for any outside server a caller names) and
#       dereference_timeout_ms is 5000, so that whole answers could be read.
#       Prints the router's peak RSS (VmHWM) before and after, the bytes the
#       server got out, and the fetches by outcome. Must show: the peak
#       grows by less than 16 MB. About 10 s. PER_SERVER=N in the
#       environment sets emergency.location_fetches_per_server.
#
#   bash benches/attack.sh webhook-ssrf
#       A tenant admin (token made here) tries to set the security desk
#       webhook to the router's own admin API, metrics, link-local metadata
#       and multicast addresses, each in its many spellings (decimal, hex,
#       octal and short IPv4, IPv4-mapped and -compatible IPv6, NAT64,
#       0.0.0.0, [::], localhost with a trailing dot, the host's own
#       address); prints each answer. Must show: every one refused with 422
#       naming why, and an outside URL taken. About 5 s.
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
    echo "${CARGO_TARGET_DIR:-target}/release/sosrouter"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_router BIN [EMERGENCY] [MORE]: the lab configuration on free ports,
# trunks on $PSAP $SCREENING $TEST $LAST, with the lines EMERGENCY (awk
# escapes: \n) added to [emergency] and the text MORE at the end; sets
# ROUTER_PID, SIP_PORT, ADMIN_PORT, METRICS_PORT.
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
        config/loopback.toml |
        awk -v extra="${2:-}" '{print} /^\[emergency\]$/ && extra != "" {print extra}' \
            >"$WORK/router.toml"
    [ -z "${3:-}" ] || printf '\n%s\n' "$3" >>"$WORK/router.toml"
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

hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# metric NAME LABELS: the sum of the router's series NAME whose labels
# contain LABELS (empty: all of them).
metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v name="$1" -v labels="${2:-}" '
            index($1, name) == 1 && (substr($1, length(name) + 1, 1) == "{" || $1 == name) &&
            index($1, labels) { sum += $2 }
            END { print sum + 0 }'
}

huge_location() {
    local calls=${1:-10} mb=${2:-100}
    [ "$calls" -ge 1 ] && [ "$calls" -le 50 ] && [ "$mb" -ge 1 ] && [ "$mb" -le 1000 ] || usage
    need curl "Debian package curl"
    local bin
    bin=$(router_bin)
    PSAP=$(free_port); SCREENING=$(free_port); TEST=$(free_port); LAST=$(free_port)
    # The location server: answers every POST with $mb MB, counts what it
    # gets out; stops by itself after 90 s.
    cat >"$WORK/lis.py" <<'PY'
import http.server, sys, threading, time
size = int(sys.argv[1]) << 20
sent = [0, 0]  # bytes, requests
lock = threading.Lock()
chunk = b"x" * (1 << 20)

class Lis(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            n = sent[1]
            sent[1] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/held+xml")
        if n % 2 == 0:
            self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        left = size
        try:
            while left > 0:
                part = chunk[: min(left, len(chunk))]
                self.wfile.write(part)
                left -= len(part)
                with lock:
                    sent[0] += len(part)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lis)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
end = time.time() + 90
while time.time() < end:
    time.sleep(0.5)
    with lock:
        line = "%d %d\n" % (sent[0], sent[1])
    open(sys.argv[2], "w").write(line)
PY
    python3 "$WORK/lis.py" "$mb" "$WORK/lis.sent" >"$WORK/lis.port" &
    PIDS+=("$!")
    for _ in $(seq 50); do [ -s "$WORK/lis.port" ] && break; sleep 0.1; done
    local lis
    lis=$(head -1 "$WORK/lis.port")
    [ -n "$lis" ] || { echo "attack: the location server did not start" >&2; exit 2; }
    local keys='location_servers = ["127.0.0.1"]\ndereference_timeout_ms = 5000'
    [ -z "${PER_SERVER:-}" ] || keys="$keys\\nlocation_fetches_per_server = $PER_SERVER"
    start_router "$bin" "$keys"
    sleep 2
    local before rss_before
    before=$(hwm_kb "$ROUTER_PID")
    rss_before=$(rss_kb "$ROUTER_PID")
    echo "router pid $ROUTER_PID: peak RSS ${before} kB, RSS ${rss_before} kB before; $calls INVITEs, a ${mb} MB answer each"
    # The INVITEs: c11 of the corpus, its reference pointing here.
    python3 - "$SIP_PORT" "$lis" "$calls" <<'PY'
import socket, sys
port, lis, calls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
text = open("tests/corpus/emergency-invites/c11-geoloc-by-reference.sip", newline="").read()
text = text.replace("\r\n", "\n").replace("\n", "\r\n")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
me = "127.0.0.1:%d" % s.getsockname()[1]
for i in range(calls):
    msg = (text.replace("<https://lis.example.com:8443/loc/7f3a9c21e4>", "<http://127.0.0.1:%d/loc/%d>" % (lis, i))
           .replace("c11-ref001@192.0.2.110", "huge-%d@127.0.0.1" % i)
           .replace("branch=z9hG4bKc11a", "branch=z9hG4bKhuge%d" % i)
           .replace("192.0.2.110:5060", me))
    s.sendto(msg.encode(), ("127.0.0.1", port))
PY
    # Every call's fetch done or skipped, or 60 s.
    local done=0 n=0
    while [ "$n" -lt 120 ]; do
        done=$(( $(metric sosrouter_location_fetches_total) + $(metric sosrouter_location_fetches_skipped_total) ))
        [ "$done" -ge "$calls" ] && break
        kill -0 "$ROUTER_PID" 2>/dev/null || { echo "attack: the router died" >&2; tail "$WORK/router.log" >&2; return 1; }
        sleep 0.5
        n=$((n + 1))
    done
    sleep 1
    local after rss_after sent
    after=$(hwm_kb "$ROUTER_PID")
    rss_after=$(rss_kb "$ROUTER_PID")
    sent=$(cat "$WORK/lis.sent" 2>/dev/null || echo "0 0")
    echo "location server: ${sent#* } requests, $(( ${sent% *} / 1048576 )) MB got out (of $((calls * mb)) MB offered)"
    local o r
    for o in ok too_large timeout failed; do
        printf 'fetches %s: %s\n' "$o" "$(metric sosrouter_location_fetches_total "outcome=\"$o\"")"
    done
    for r in server_busy busy not_listed reserved; do
        printf 'skipped %s: %s\n' "$r" "$(metric sosrouter_location_fetches_skipped_total "reason=\"$r\"")"
    done
    echo "router peak RSS (VmHWM): ${before} kB before, ${after} kB after (+$(( (after - before) / 1024 )) MB); RSS now ${rss_after} kB"
    if [ "$done" -ge "$calls" ] && [ $((after - before)) -lt 16384 ]; then
        echo "PASS"
    else
        echo "FAIL"
        return 1
    fi
}

webhook_ssrf() {
    need curl "Debian package curl"
    local bin token table
    bin=$(router_bin)
    PSAP=$(free_port); SCREENING=$(free_port); TEST=$(free_port); LAST=$(free_port)
    "$bin" token new --role tenant-admin --tenant acme --name attacker >"$WORK/token" 2>/dev/null
    token=$(head -1 "$WORK/token")
    table=$(sed -n '/^\[\[admin.token\]\]/,$p' "$WORK/token")
    start_router "$bin" "" "$table"
    local own
    own=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("192.0.2.1", 9)); print(s.getsockname()[0])' 2>/dev/null || true)
    local a=$ADMIN_PORT m=$METRICS_PORT
    local urls=(
        "http://127.0.0.1:$a/v1/reload"
        "http://127.0.0.2:$a/v1/reload"
        "http://localhost:$a/v1/reload"
        "http://LOCALHOST.:$a/v1/reload"
        "http://admin.localhost:$a/v1/reload"
        "http://user:pw@127.0.0.1:$a/v1/reload"
        "http://2130706433:$a/v1/reload"
        "http://0x7f000001:$a/v1/reload"
        "http://0x7f.0.0.1:$a/v1/reload"
        "http://0177.0.0.1:$a/v1/reload"
        "http://017700000001:$a/v1/reload"
        "http://127.1:$a/v1/reload"
        "http://127.0.0.1.:$a/v1/reload"
        "http://127.0.0.1%2e:$a/v1/reload"
        "http://[::1]:$m/metrics"
        "http://[0:0:0:0:0:0:0:1]:$m/metrics"
        "http://[::ffff:127.0.0.1]:$a/v1/reload"
        "http://[::ffff:7f00:1]:$a/v1/reload"
        "http://[::127.0.0.1]:$a/v1/reload"
        "http://[::ffff:0:127.0.0.1]:$a/v1/reload"
        "http://[64:ff9b::127.0.0.1]:$a/v1/reload"
        "http://[2002:7f00:1::]:$a/v1/reload"
        "http://0.0.0.0:$a/v1/reload"
        "http://0:$a/v1/reload"
        "http://[::]:$a/v1/reload"
        "http://169.254.169.254/latest/meta-data/"
        "http://[::ffff:169.254.169.254]/latest/meta-data/"
        "http://2852039166/latest/meta-data/"
        "http://[fe80::1]/"
        "http://224.0.0.1/"
        "http://[ff02::1]/"
        "http://255.255.255.255/"
    )
    [ -z "$own" ] || [ "$own" = 127.0.0.1 ] || urls+=("http://$own:$a/v1/reload")
    local url code refused=0 taken=0 body
    for url in "${urls[@]}"; do
        code=$(curl -s -o "$WORK/answer" -w '%{http_code}' -X PUT \
            -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            --data "{\"url\": \"$url\"}" \
            "http://127.0.0.1:$ADMIN_PORT/v1/tenants/acme/security-desk")
        body=$(sed -e 's/.*"error":"\([^;]*\).*/\1/' "$WORK/answer")
        if [ "$code" = 422 ]; then
            refused=$((refused + 1))
            printf 'refused %s  %s\n        %s\n' "$code" "$url" "$body"
        else
            taken=$((taken + 1))
            printf 'TAKEN   %s  %s\n' "$code" "$url"
        fi
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data '{"url": "https://desk.acme.example/hooks/911"}' \
        "http://127.0.0.1:$ADMIN_PORT/v1/tenants/acme/security-desk")
    echo "outside URL https://desk.acme.example/hooks/911: $code"
    echo "$refused of ${#urls[@]} refused"
    if [ "$taken" = 0 ] && [ "$code" = 200 ]; then
        echo "PASS"
    else
        echo "FAIL"
        return 1
    fi
}

case "${1:-}" in
    invite-flood) shift; invite_flood "$@" ;;
    huge-location) shift; huge_location "$@" ;;
    webhook-ssrf) shift; webhook_ssrf "$@" ;;
    *) usage ;;
esac
