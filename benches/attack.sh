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
#   bash benches/attack.sh tcp-slots [--per N] [--addrs K] [--hold S]
#       Fills the SIP TCP slots with idle connections from K loopback
#       addresses (127.0.0.2 on, default 8) x N each (default 512: with the
#       default sip.tcp.max_connections of 4,096 every slot is taken), each
#       having sent one OPTIONS, then places an emergency call with SIPp
#       over a new TCP connection. Must show: the call is answered (within
#       2 s) and an idle connection was closed for it.
#
#   bash benches/attack.sh slowloris [--conns N] [--interval S] [--seconds S]
#       N connections (default 200) from 127.0.0.2 each send a SIP message
#       one byte every S seconds (default 1), for at most --seconds
#       (default 30); meanwhile an emergency call over TCP. Must show:
#       every connection is closed at sip.tcp.message_timeout_ms (5 s) from
#       its first byte, and the call is answered.
#
#   bash benches/attack.sh admin-idle [--conns N] [--addrs K] [--hold S] [--nofile N]
#       N idle connections (default 5,000) to the admin listener from K
#       loopback addresses (127.0.1.1 on, default 64), held S seconds
#       (default 20). Reports the router's RSS and open descriptors before,
#       with the connections open, and at the end (/proc/PID/status,
#       /proc/PID/fd), whether /healthz answers, and whether an emergency
#       call over a new TCP connection is answered. --nofile runs the
#       router with that descriptor limit (soft and hard; 4,096 is where
#       the problem was found). Must show: at most admin.max_connections
#       (256) held, none past the header-read timeout (5 s), /healthz and
#       the call answered throughout.
#
#   These three hold at most 20,000 connections and 120 s each, need
#   python3 (standard library) besides SIPp, and run the router on a
#   configuration of their own: 911 routed to a SIPp trunk by the static
#   table, SIP over UDP and TCP, the admin and metrics listeners.
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

# ---------------------------------------------------------------------------
# Connection attacks: tcp-slots, slowloris, admin-idle. Helpers are named
# conn_* and used by these three only; the processes they start go in PIDS
# and their files under WORK, both ended or removed on exit.

CONN_ROOT="$(pwd)"

conn_say() { echo "attack: $*" >&2; }

# conn_setup: checks the tools, finds or builds the binary, makes a work
# directory and the helper; sets CONN_BIN, CONN_WORK, CONN_PY.
conn_setup() {
    local tool
    for tool in sipp python3 ss; do
        command -v "$tool" >/dev/null 2>&1 || { conn_say "needs $tool"; exit 2; }
    done
    [ -r /proc/self/status ] || { conn_say "needs Linux /proc"; exit 2; }
    if [ -n "${SOSROUTER_BIN:-}" ]; then
        CONN_BIN="$SOSROUTER_BIN"
    else
        (cd "$CONN_ROOT" && cargo build --release --locked --quiet)
        CONN_BIN="${CARGO_TARGET_DIR:-$CONN_ROOT/target}/release/sosrouter"
    fi
    [ -x "$CONN_BIN" ] || { conn_say "no binary at $CONN_BIN"; exit 2; }
    CONN_WORK="$WORK/conn"
    mkdir -p "$CONN_WORK"
    # A copy, so that a build running meanwhile cannot swap it mid-run.
    cp "$CONN_BIN" "$CONN_WORK/sosrouter"
    CONN_BIN="$CONN_WORK/sosrouter"
    CONN_PY="$CONN_WORK/conn.py"
    conn_write_helper "$CONN_PY"
    conn_say "binary ${SOSROUTER_BIN:-target/release/sosrouter}; work directory $CONN_WORK"
}

# conn_bounded NAME VALUE MAX: exits 2 unless 1 <= VALUE <= MAX.
conn_bounded() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt "$3" ]; then
        conn_say "$1 must be a whole number from 1 to $3"
        exit 2
    fi
}

conn_free_port() { python3 "$CONN_PY" free-port; }

# conn_start_router [NOFILE]: a router on free ports with SIP over UDP and
# TCP on 127.0.0.1, calls to 911 routed to a SIPp trunk, the admin and
# metrics listeners; sets ROUTER_PID, SIP_PORT, ADMIN_PORT, METRICS_PORT,
# PSAP_PORT. Extra configuration lines come from CONN_EXTRA.
conn_start_router() {
    local nofile="${1:-}" cfg="$CONN_WORK/router.toml" n=0 wrap=()
    SIP_PORT="$(conn_free_port)"
    PSAP_PORT="$(conn_free_port)"
    ADMIN_PORT="$(conn_free_port)"
    METRICS_PORT="$(conn_free_port)"
    cat >"$cfg" <<EOF
# Written by benches/attack.sh.
[sip]
listen = ["udp:127.0.0.1:$SIP_PORT", "tcp:127.0.0.1:$SIP_PORT"]
advertise = "127.0.0.1:$SIP_PORT"
allow = ["127.0.0.0/8"]

[log]
level = "info"

[routing]
mode = "static"

[health]
interval_s = 0

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.0/8"]
country = "US"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:$PSAP_PORT"

[[route]]
numbers = ["911"]
targets = ["psap"]

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[metrics]
listen = "127.0.0.1:$METRICS_PORT"
${CONN_EXTRA:-}
EOF
    sed 's/@CHECK@//' "$CONN_ROOT/tests/sipp/uas.xml" >"$CONN_WORK/uas.xml"
    (cd "$CONN_WORK" && exec sipp -sf uas.xml -i 127.0.0.1 -p "$PSAP_PORT" -t u1 \
        -timeout 300s -nostdin >/dev/null 2>&1) &
    PIDS+=("$!")
    [ -n "$nofile" ] && wrap=(prlimit "--nofile=$nofile:$nofile")
    env -u SOSROUTER_DATABASE_URL "${wrap[@]}" "$CONN_BIN" run --config "$cfg" \
        >"$CONN_WORK/router.log" 2>&1 &
    ROUTER_PID=$!
    PIDS+=("$ROUTER_PID")
    until grep -q "listening admin http" "$CONN_WORK/router.log" 2>/dev/null; do
        sleep 0.1
        n=$((n + 1))
        if ! kill -0 "$ROUTER_PID" 2>/dev/null || [ $n -gt 200 ]; then
            conn_say "the router did not start:"
            cat "$CONN_WORK/router.log" >&2
            exit 1
        fi
    done
    sleep 0.3
    grep -m2 "open file limit" "$CONN_WORK/router.log" | sed 's/^[^ ]* *//' >&2 || true
}

conn_check_router() {
    if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
        conn_say "THE ROUTER DIED (pid $ROUTER_PID); its log ends with:"
        tail -20 "$CONN_WORK/router.log" >&2
        exit 1
    fi
}

conn_rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
conn_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# conn_metric NAME [LABEL_FILTER]: the sum of the series of NAME whose
# labels contain LABEL_FILTER (e.g. 'reason="evicted"').
conn_metric() {
    python3 "$CONN_PY" http "$METRICS_PORT" /metrics --body 2>/dev/null |
        awk -v name="$1" -v filter="${2:-}" '
            $0 !~ /^#/ && index($0, name) == 1 {
                rest = substr($0, length(name) + 1)
                if ((rest ~ /^[{ ]/) && index($0, filter) > 0) sum += $NF
            }
            END { printf "%d", sum }'
}

# conn_call: one emergency call (911) with SIPp over a new TCP connection
# from 127.0.0.1; prints "answered in N ms" or "NOT answered (...)".
conn_call() {
    local port start end rc
    port="$(conn_free_port)"
    start=$(date +%s%N)
    rc=0
    # Unanswered for 10 s is a failed call (-recv_timeout); timeout(1)
    # bounds the rest (SIPp's own -timeout waits on a connect in progress).
    (cd "$CONN_WORK" && exec timeout -k 2 20 sipp "127.0.0.1:$SIP_PORT" \
        -sf "$CONN_ROOT/tests/sipp/uac.xml" -s 911 -key caller +12125550142 \
        -i 127.0.0.1 -p "$port" -t t1 -m 1 -recv_timeout 10000 -timeout 15s \
        -nostdin >/dev/null 2>&1) &
    PIDS+=("$!")
    wait "$!" || rc=$?
    end=$(date +%s%N)
    if [ "$rc" -eq 0 ]; then
        echo "answered, call completed in $(((end - start) / 1000000)) ms"
    else
        echo "NOT answered (SIPp exit $rc after $(((end - start) / 1000000)) ms)"
    fi
}

# conn_answered_within CALL MS: whether CALL (a conn_call line) says the
# call was answered and completed within MS milliseconds.
conn_answered_within() {
    [[ "$1" == answered* ]] && [ "${1//[^0-9]/}" -le "$2" ]
}

# conn_verdict COND...: PASS when every condition (true or false) is true;
# FAIL returns 1.
conn_verdict() {
    local c
    for c in "$@"; do
        if [ "$c" != true ]; then
            echo "FAIL"
            return 1
        fi
    done
    echo "PASS"
}

conn_bool() { if "$@"; then echo true; else echo false; fi; }
conn_starts() { [[ "$1" == "$2"* ]]; }

# conn_wait_ready FILE: waits for the helper's "ready" line (bounded).
conn_wait_ready() {
    local n=0
    until grep -q '^ready' "$1" 2>/dev/null; do
        sleep 0.2
        n=$((n + 1))
        [ $n -gt 900 ] && { conn_say "the connections never opened"; exit 1; }
        conn_check_router
    done
    grep '^ready' "$1" | sed 's/^ready /  /'
}

attack_tcp_slots() {
    local per=512 addrs=8 hold=30 ips=() i status call evicted
    while [ $# -gt 0 ]; do
        case "$1" in
            --per) per="${2:-}"; shift ;;
            --addrs) addrs="${2:-}"; shift ;;
            --hold) hold="${2:-}"; shift ;;
            *) conn_say "tcp-slots: unknown option $1"; exit 2 ;;
        esac
        shift
    done
    conn_bounded --addrs "$addrs" 8
    conn_bounded --per "$per" $((20000 / addrs))
    conn_bounded --hold "$hold" 120
    conn_setup
    conn_start_router
    for i in $(seq 2 $((addrs + 1))); do ips+=("127.0.0.$i"); done
    status="$CONN_WORK/hold.status"
    echo "== tcp-slots: $addrs addresses x $per idle connections (one OPTIONS each), held ${hold} s"
    echo "router RSS at rest: $(conn_rss_mb "$ROUTER_PID") MB, descriptors: $(conn_fds "$ROUTER_PID")"
    echo "emergency call over TCP at rest: $(conn_call)"
    python3 "$CONN_PY" hold --to "127.0.0.1:$SIP_PORT" --from "$(IFS=,; echo "${ips[*]}")" \
        --per "$per" --send options --hold "$hold" --status "$status" >"$CONN_WORK/hold.out" 2>&1 &
    PIDS+=("$!")
    local holder=$!
    conn_wait_ready "$status"
    conn_check_router
    echo "router: $(conn_metric sosrouter_tcp_connections_open) TCP connections open; RSS $(conn_rss_mb "$ROUTER_PID") MB, descriptors: $(conn_fds "$ROUTER_PID")"
    call="$(conn_call)"
    echo "emergency call over a new TCP connection: $call"
    conn_check_router
    evicted="$(conn_metric sosrouter_tcp_connections_closed_total 'reason="evicted"')"
    echo "closed by the router for a new connection (evicted): $evicted"
    touch "$CONN_WORK/stop"
    wait "$holder" 2>/dev/null || true
    sed 's/^/  /' "$CONN_WORK/hold.out"
    conn_check_router
    # Must show: the call answered within 2 s, an idle connection closed for it.
    conn_verdict "$(conn_bool conn_answered_within "$call" 2000)" "$(conn_bool [ "$evicted" -ge 1 ])"
}

attack_slowloris() {
    local conns=200 interval=1 seconds=30 holder call closed
    while [ $# -gt 0 ]; do
        case "$1" in
            --conns) conns="${2:-}"; shift ;;
            --interval) interval="${2:-}"; shift ;;
            --seconds) seconds="${2:-}"; shift ;;
            *) conn_say "slowloris: unknown option $1"; exit 2 ;;
        esac
        shift
    done
    conn_bounded --conns "$conns" 512
    conn_bounded --interval "$interval" 60
    conn_bounded --seconds "$seconds" 120
    conn_setup
    conn_start_router
    echo "== slowloris: $conns connections from 127.0.0.2, one byte of a SIP message every $interval s, at most $seconds s"
    python3 "$CONN_PY" trickle --to "127.0.0.1:$SIP_PORT" --from 127.0.0.2 --conns "$conns" \
        --interval "$interval" --seconds "$seconds" >"$CONN_WORK/trickle.out" 2>&1 &
    PIDS+=("$!")
    holder=$!
    sleep 2
    call="$(conn_call)"
    echo "emergency call over TCP meanwhile: $call"
    wait "$holder" 2>/dev/null || true
    cat "$CONN_WORK/trickle.out"
    closed="$(conn_metric sosrouter_tcp_connections_closed_total 'reason="message_timeout"')"
    echo "router: closed for message_timeout: $closed; RSS $(conn_rss_mb "$ROUTER_PID") MB"
    conn_check_router
    # Must show: every trickling connection closed at its deadline, the call answered.
    conn_verdict "$(conn_bool [ "$closed" -eq "$conns" ])" "$(conn_bool conn_answered_within "$call" 2000)"
}

attack_admin_idle() {
    local conns=5000 addrs=64 hold=20 nofile="" ips=() i status holder rest ready
    local fds_rest fds_open health call health_end
    while [ $# -gt 0 ]; do
        case "$1" in
            --conns) conns="${2:-}"; shift ;;
            --addrs) addrs="${2:-}"; shift ;;
            --hold) hold="${2:-}"; shift ;;
            --nofile) nofile="${2:-}"; shift ;;
            *) conn_say "admin-idle: unknown option $1"; exit 2 ;;
        esac
        shift
    done
    conn_bounded --conns "$conns" 20000
    conn_bounded --addrs "$addrs" 250
    conn_bounded --hold "$hold" 120
    [ "$hold" -ge 5 ] || { conn_say "admin-idle: --hold must be at least 5"; exit 2; }
    [ -z "$nofile" ] || conn_bounded --nofile "$nofile" 1048576
    conn_setup
    conn_start_router "$nofile"
    for i in $(seq 1 "$addrs"); do ips+=("127.0.1.$i"); done
    status="$CONN_WORK/hold.status"
    echo "== admin-idle: $conns idle connections to the admin listener from $addrs addresses, held $hold s${nofile:+, router descriptor limit $nofile}"
    rest="$(conn_rss_mb "$ROUTER_PID")"
    fds_rest="$(conn_fds "$ROUTER_PID")"
    echo "router at rest: RSS $rest MB, descriptors $fds_rest"
    python3 "$CONN_PY" hold --to "127.0.0.1:$ADMIN_PORT" --from "$(IFS=,; echo "${ips[*]}")" \
        --per $(((conns + addrs - 1) / addrs)) --total "$conns" --send none --hold "$hold" \
        --status "$status" >"$CONN_WORK/hold.out" 2>&1 &
    PIDS+=("$!")
    holder=$!
    conn_wait_ready "$status"
    ready=$SECONDS
    sleep 1
    conn_check_router
    fds_open="$(conn_fds "$ROUTER_PID")"
    echo "with the connections open: RSS $(conn_rss_mb "$ROUTER_PID") MB (at rest $rest), descriptors $fds_open"
    health="$(python3 "$CONN_PY" http "$ADMIN_PORT" /healthz)"
    echo "/healthz on a fresh connection: $health"
    call="$(conn_call)"
    echo "emergency call over a new TCP connection: $call"
    # The last look while the attacker still holds what it opened.
    while [ $((SECONDS - ready)) -lt $((hold - 2)) ]; do sleep 0.5; done
    conn_check_router
    health_end="$(python3 "$CONN_PY" http "$ADMIN_PORT" /healthz)"
    echo "after $((SECONDS - ready)) s of holding: RSS $(conn_rss_mb "$ROUTER_PID") MB, descriptors $(conn_fds "$ROUTER_PID"); /healthz: $health_end"
    wait "$holder" 2>/dev/null || true
    sed 's/^/  /' "$CONN_WORK/hold.out"
    echo "router counted: refused $(conn_metric sosrouter_http_connections_refused_total 'listener="admin"') (peer_limit $(conn_metric sosrouter_http_connections_refused_total 'reason="peer_limit"'), full $(conn_metric sosrouter_http_connections_refused_total 'reason="full"')), closed: evicted $(conn_metric sosrouter_http_connections_closed_total 'reason="evicted"'), header_timeout $(conn_metric sosrouter_http_connections_closed_total 'reason="header_timeout"')"
    # Must show: /healthz and the call answered while the connections are
    # held, and no more held than admin.max_connections (256) allows.
    conn_verdict "$(conn_bool conn_starts "$health" "200 ")" "$(conn_bool conn_starts "$health_end" "200 ")" \
        "$(conn_bool conn_answered_within "$call" 2000)" "$(conn_bool [ $((fds_open - fds_rest)) -le 264 ])"
}

# conn_write_helper FILE: the connection driver (Python, standard library).
conn_write_helper() {
    cat >"$1" <<'PY'
import resource, selectors, socket, statistics, sys, time, os, argparse

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)

def options(local, n):
    return ("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {local[0]}:{local[1]};branch=z9hG4bKatk{n}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=atk\r\n"
            "To: <sip:127.0.0.1>\r\n"
            f"Call-ID: attack-{n}-{os.getpid()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()

def summary(times):
    if not times:
        return "none"
    return (f"{len(times)}, after {min(times):.1f} s (min) / "
            f"{statistics.median(times):.1f} s (median) / {max(times):.1f} s (max)")

def hold(a):
    raise_nofile()
    to = addr(a.to)
    ips = a.__dict__["from"].split(",")
    sel = selectors.DefaultSelector()
    opened = answered = failed = 0
    start = time.monotonic()
    conns = {}
    total = a.total or a.per * len(ips)
    n = 0
    gave_up = False
    for i in range(a.per):
        for ip in ips:
            if n >= total:
                break
            if time.monotonic() - start > a.open_seconds:
                gave_up = True
                break
            n += 1
            s = socket.socket()
            try:
                s.bind((ip, 0))
                s.settimeout(0.5)
                s.connect(to)
            except OSError:
                failed += 1
                s.close()
                continue
            opened += 1
            if a.send == "options":
                try:
                    s.sendall(options(s.getsockname(), n))
                    got = b""
                    while b"\r\n\r\n" not in got:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        got += chunk
                    if got.startswith(b"SIP/2.0 200"):
                        answered += 1
                except OSError:
                    pass
            s.setblocking(False)
            conns[s] = time.monotonic()
            sel.register(s, selectors.EVENT_READ)
    took = time.monotonic() - start
    line = f"ready opened={opened} failed_to_connect={failed} in {took:.1f} s"
    if gave_up:
        line += f" (stopped opening after {a.open_seconds:.0f} s)"
    if a.send == "options":
        line += f" answered={answered}"
    with open(a.status + ".tmp", "w") as f:
        f.write(line + "\n")
    os.rename(a.status + ".tmp", a.status)
    closed = []
    end = time.monotonic() + a.hold
    stop = os.path.join(os.path.dirname(a.status), "stop")
    while time.monotonic() < end and not os.path.exists(stop) and conns:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed.append(time.monotonic() - conns.pop(s))
                sel.unregister(s)
                s.close()
    print(f"held: {opened} opened, {len(conns)} still open at the end; closed by the router: {summary(closed)} (from each one's connect)")

def trickle(a):
    raise_nofile()
    to = addr(a.to)
    sel = selectors.DefaultSelector()
    conns = {}
    for n in range(a.conns):
        s = socket.socket()
        s.bind((a.__dict__["from"], 0))
        s.settimeout(2)
        s.connect(to)
        s.setblocking(False)
        conns[s] = [options(s.getsockname(), n), 0, None]
        sel.register(s, selectors.EVENT_READ)
    start = time.monotonic()
    closed = []
    sent_whole = 0
    next_byte = start
    while conns and time.monotonic() - start < a.seconds:
        now = time.monotonic()
        if now >= next_byte:
            for s, st in list(conns.items()):
                msg, i, first = st
                if i >= len(msg):
                    continue
                try:
                    s.send(msg[i:i + 1])
                except OSError:
                    closed.append(now - (first or now))
                    sel.unregister(s)
                    del conns[s]
                    s.close()
                    continue
                st[1] += 1
                if first is None:
                    st[2] = now
                if st[1] == len(msg):
                    sent_whole += 1
            next_byte = now + a.interval
        for key, _ in sel.select(timeout=max(0.0, min(0.2, next_byte - time.monotonic()))):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data and s in conns:
                first = conns[s][2] or time.monotonic()
                closed.append(time.monotonic() - first)
                sel.unregister(s)
                del conns[s]
                s.close()
    print(f"trickled: {a.conns} connections; closed by the router: {summary(closed)} (from each one's first byte); "
          f"still open after {time.monotonic() - start:.0f} s: {len(conns)}; messages that got through whole: {sent_whole}")

def http(a):
    start = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
    except OSError as e:
        print(f"FAILED after {(time.monotonic() - start) * 1000:.0f} ms ({e.__class__.__name__}: {e})")
        return
    if a.body:
        sys.stdout.write(got.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
        return
    status = got.split(b" ", 2)[1].decode() if got.startswith(b"HTTP/") else "no answer"
    print(f"{status} in {(time.monotonic() - start) * 1000:.0f} ms")

def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        print(port)
        return

p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
h = sub.add_parser("hold")
h.add_argument("--to", required=True)
h.add_argument("--from", required=True)
h.add_argument("--per", type=int, required=True)
h.add_argument("--total", type=int, default=0)
h.add_argument("--send", choices=["none", "options"], default="none")
h.add_argument("--hold", type=float, required=True)
h.add_argument("--open-seconds", type=float, default=60)
h.add_argument("--status", required=True)
t = sub.add_parser("trickle")
t.add_argument("--to", required=True)
t.add_argument("--from", required=True)
t.add_argument("--conns", type=int, required=True)
t.add_argument("--interval", type=float, required=True)
t.add_argument("--seconds", type=float, required=True)
g = sub.add_parser("http")
g.add_argument("port", type=int)
g.add_argument("path")
g.add_argument("--body", action="store_true")
sub.add_parser("free-port")
a = p.parse_args()
{"hold": hold, "trickle": trickle, "http": http, "free-port": lambda _: free_port()}[a.cmd](a)
PY
}

# End of the connection attacks.
# ---------------------------------------------------------------------------

case "${1:-}" in
    invite-flood) shift; invite_flood "$@" ;;
    huge-location) shift; huge_location "$@" ;;
    webhook-ssrf) shift; webhook_ssrf "$@" ;;
    tcp-slots) shift; attack_tcp_slots "$@" ;;
    slowloris) shift; attack_slowloris "$@" ;;
    admin-idle) shift; attack_admin_idle "$@" ;;
    *) usage ;;
esac
