#!/usr/bin/env bash
# Whole-system load benchmark of sosrouter with SIPp on loopback.
#
#   bash benches/load.sh            full run (about 12 minutes)
#   bash benches/load.sh --quick    shorter steps and runs (about 7 minutes)
#   bash benches/load.sh --soak     5 minutes at 500 calls/s over UDP, RSS series
#   bash benches/load.sh --flood    overload from one source: a caller on
#                                   127.0.0.1 floods 1,000 emergency calls/s
#                                   while a carrier on 127.0.0.2 calls at 20/s,
#                                   the router capped at 10,000 transactions
#                                   (--max-transactions changes it); 150 s,
#                                   each caller's calls counted apart
#   bash benches/load.sh --cpu      only the CPU-per-call runs
#   bash benches/load.sh --instructions  the router under callgrind: its
#                                   user-space instructions per call, a figure
#                                   the machine's other load does not move
#                                   (the operator set-up; --static for the
#                                   static relay)
#   bash benches/load.sh --compare  the CPU runs of sosrouter (operator set-up),
#                                   sosrouter as the static relay, Kamailio and
#                                   the bare UDP floor, interleaved round-robin
#                                   (3 rounds, about 11 minutes), and a table
#
# The router runs as an operator runs it unless --static is given: emergency
# routing (country rules, detection, the location read from c01's PIDF-LO
# and judged), the example inventory (tests/corpus/emergency-invites/
# inventory.tsv) imported into a SQLite database in the work directory,
# call records written to it, the metrics and admin listeners open, log
# level info, the shipped level (--log warn for the level below).
# Emergency routing sends every call to one trunk: c01, located by hand,
# goes to the screening center by the US rules, and the screening and PSAP
# trunks are one SIPp trunk; every caller dials 911, and that trunk (on the
# first pair's port) answers all the calls. The static relay (--static),
# Kamailio and the floor give each pair its own number and trunk.
# --static: the relay alone, by the static [[route]] table, log level warn,
# no database, no listeners besides SIP: the set-up of every figure before
# the operator set-up was measured.
#
# Options: --pairs N (SIPp caller/trunk pairs, 1-8, default 2),
#          --uac FILE (another SIPp caller scenario, e.g. tests/sipp/uac.xml
#          for a small SDP-only INVITE; [caller] is +12125550142),
#          --relay NAME (what runs in the router's place: sosrouter, the
#          default; kamailio, Kamailio 5.6 as a stateful relay with one
#          worker, benches/load/kamailio.cfg, over UDP and in the TCP ramp
#          over TCP; floor, a bare UDP forwarder that parses nothing,
#          benches/load/udp_floor.rs, whose TCP ramp is skipped. Other
#          relays than sosrouter work with --cpu, --quick and the full run),
#          --max-transactions N (the router's sip.overload.max_transactions;
#          past it new calls get 503 and count as failed: shows what the
#          limit does to memory and to the calls admitted),
#          --seconds N (how long --soak and --flood last; defaults 300, 150),
#          --static (the router as the static relay, see above; --compare
#          always runs both),
#          --log LEVEL (the operator set-up's log level: info, the default
#          and the shipped level, or warn, debug, ...),
#          --keep (keep the work directory with SIPp logs and the relay log).
# Environment: SOSROUTER_BIN to use a given binary instead of building one;
#          UDP_FLOOR_BIN likewise for the floor (else cargo build --release
#          --example udp_floor); KAMAILIO_BIN for another kamailio than the
#          one on PATH (Debian package kamailio: apt-get install kamailio);
#          KAMAILIO_MEM=qm|fm|tlsf for Kamailio's memory manager (-x; its
#          default is qm, and the figure depends on it: docs/performance.md).
# Without kamailio, --relay kamailio and --compare stop with exit code 2.
#
# What it measures (docs/performance.md explains the method and the figures):
#   1. the highest aggregate call rate with no failed call, UDP then TCP,
#      stepping the rate up; one call is INVITE/100/180/200/ACK/BYE/200;
#   2. the relay's CPU time per call (utime+stime from /proc; for Kamailio
#      the sum over its main process and every child it forks) at 500
#      calls/s over UDP, three runs, each drained of its timers, and the
#      datagrams it received and sent per call, as the SIPp ends counted
#      them (sosrouter and Kamailio receive 6 and send 7, their own 100
#      Trying included; the floor receives and sends 6);
#   3. the router's RSS at rest, under load, and (--soak) over 5 minutes.
# Every call carries the 1.5 KB emergency INVITE of the corpus
# (tests/corpus/emergency-invites/c01-us-civic-cid.sip).
#
# Every process the script starts is recorded by PID and ended on exit
# (Kamailio: its main process, then a check that each child is gone).
# It exits 1 if the relay dies, 2 on a usage or setup error (a missing
# kamailio included, with --relay kamailio and --compare), 0 otherwise
# (a step with failed calls is a result, not an error).

set -euo pipefail

MODE=full
PAIRS=2
UAC_ARG=""
KEEP=0
RELAY=sosrouter
RELAY_SET=0
MAX_TXNS=
SECONDS_ARG=
# How the router is set up: operator (emergency routing, inventory, records,
# log level LOG_LEVEL) or static (the static relay, log level warn).
SETUP=operator
LOG_LEVEL=info
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --soak) MODE=soak ;;
        --flood) MODE=flood ;;
        --cpu) MODE=cpu ;;
        --instructions) MODE=instructions ;;
        --compare) MODE=compare ;;
        --relay) RELAY="${2:-}"; RELAY_SET=1; shift ;;
        --uac) UAC_ARG="${2:-}"; shift ;;
        --pairs) PAIRS="${2:-}"; shift ;;
        --keep) KEEP=1 ;;
        --static) SETUP=static ;;
        --log) LOG_LEVEL="${2:-}"; shift ;;
        --seconds) SECONDS_ARG="${2:-}"; shift ;;
        --max-transactions) MAX_TXNS="${2:-}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$MAX_TXNS" in
    "" | *[!0-9]*) [ -z "$MAX_TXNS" ] || { echo "load.sh: --max-transactions takes a number" >&2; exit 2; } ;;
esac
case "$SECONDS_ARG" in
    "") ;;
    *[!0-9]* | 0) echo "load.sh: --seconds takes a positive number" >&2; exit 2 ;;
esac
case "$LOG_LEVEL" in
    error|warn|info|debug|trace) ;;
    *) echo "load.sh: --log takes error, warn, info, debug or trace" >&2; exit 2 ;;
esac
case "$PAIRS" in
    [1-8]) ;;
    *) echo "load.sh: --pairs takes 1 to 8" >&2; exit 2 ;;
esac
case "$RELAY" in
    sosrouter|kamailio|floor) ;;
    *) echo "load.sh: --relay takes sosrouter, kamailio or floor" >&2; exit 2 ;;
esac
if [ "$RELAY" != sosrouter ] && { [ "$MODE" = soak ] || [ "$MODE" = flood ] || [ "$MODE" = instructions ]; }; then
    echo "load.sh: --relay $RELAY works with --cpu, --quick and the full run; --$MODE measures sosrouter only" >&2
    exit 2
fi
if [ "$MODE" = compare ] && [ "$RELAY_SET" = 1 ]; then
    echo "load.sh: --compare runs every relay (sosrouter, kamailio, floor); it takes no --relay" >&2
    exit 2
fi
# The relays this run starts, in the order of the comparison; "static" is
# sosrouter set up as the static relay.
if [ "$MODE" = compare ]; then
    RELAYS=(sosrouter static kamailio floor)
elif [ "$RELAY" = sosrouter ] && [ "$SETUP" = static ]; then
    RELAYS=(static)
    RELAY=static
else
    RELAYS=("$RELAY")
fi
uses_relay() {
    local r
    for r in "${RELAYS[@]}"; do [ "$r" = "$1" ] && return 0; done
    return 1
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCEN="$ROOT/benches/load"
UAC_XML="$SCEN/uac_emergency.xml"
if [ -n "$UAC_ARG" ]; then
    UAC_XML="$(cd "$(dirname "$UAC_ARG")" && pwd)/$(basename "$UAC_ARG")"
    [ -r "$UAC_XML" ] || { echo "load.sh: cannot read $UAC_ARG" >&2; exit 2; }
fi
UAS_XML="$SCEN/uas.xml"
# Each pair dials its own number, routed to its own trunk.
NUMBERS=(911 112 999 000 110 118 119 100)

# Sizes of the runs: seconds per ramp step, calls per CPU run.
RATES=(200 400 600 800 1000 1200 1400 1600 2000 2400 2800 3200 4000)
if [ "$MODE" = quick ] || [ "$MODE" = cpu ] || [ "$MODE" = compare ]; then
    STEP_SECONDS=5
    CPU_CALLS=5000
else
    STEP_SECONDS=15
    CPU_CALLS=15000
fi
# A step whose callers reach less than this share of the asked rate
# measures SIPp, not the router: the ramp stops there.
MIN_ACHIEVED_PCT=90
CPU_RATE=500
CPU_RUNS=3
SOAK_RATE=500
# Under callgrind the router runs some 50 times slower: fewer calls, a
# lower rate.
INSTR_CALLS=1000
INSTR_RATE=100
SOAK_SECONDS=300
SOAK_SAMPLE=10
# Each caller's own rate and source address, when they differ (--flood);
# empty: the aggregate rate split evenly, every caller on 127.0.0.1.
PAIR_RATE=()
PAIR_IP=()
if [ "$MODE" = flood ]; then
    PAIRS=2
    PAIR_RATE=(1000 20)
    PAIR_IP=(127.0.0.1 127.0.0.2)
    SOAK_RATE=$((PAIR_RATE[0] + PAIR_RATE[1]))
    SOAK_SECONDS=150
    MAX_TXNS="${MAX_TXNS:-10000}"
fi
SOAK_SECONDS="${SECONDS_ARG:-$SOAK_SECONDS}"
# After the last call, the router still runs timers: the BYE server
# transaction lingers 64*T1 = 32 s over UDP (Timer J). A CPU run counts
# ticks until they are done, so each call is charged its whole cost.
DRAIN_SECONDS=35
# The call is held this long between ACK and BYE.
HOLD_MS=50
# SIPp's socket buffers (its default, 64 KB, drops datagrams in bursts);
# the kernel caps this at net.core.rmem_max / wmem_max.
SIPP_BUFFER=4194304

if [ "$MODE" = instructions ]; then
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null || { echo "load.sh: --instructions needs $tool (Debian package valgrind)" >&2; exit 2; }
    done
fi
for tool in sipp ss getconf awk curl; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool is needed (SIPp: Debian package sip-tester)" >&2; exit 2; }
done
[ -r /proc/self/stat ] || { echo "load.sh: needs Linux /proc" >&2; exit 2; }
HZ="$(getconf CLK_TCK)"
if uses_relay kamailio; then
    KAMAILIO="${KAMAILIO_BIN:-$(command -v kamailio || true)}"
    [ -z "$KAMAILIO" ] && [ -x /usr/sbin/kamailio ] && KAMAILIO=/usr/sbin/kamailio
    if [ -z "$KAMAILIO" ] || [ ! -x "$KAMAILIO" ]; then
        echo "load.sh: --relay kamailio and --compare need Kamailio 5.6: apt-get install kamailio" \
            "(or KAMAILIO_BIN=path)" >&2
        exit 2
    fi
    KAMAILIO_VERSION="$("$KAMAILIO" -v 2>/dev/null | awk '/^version:/ {print $3; exit}')"
    KAMAILIO_CFG="$ROOT/benches/load/kamailio.cfg"
    [ -r "$KAMAILIO_CFG" ] || { echo "load.sh: cannot read $KAMAILIO_CFG" >&2; exit 2; }
    # Its memory manager: Kamailio's default (qm) unless KAMAILIO_MEM names
    # another (-x; private memory then uses the same).
    KAMAILIO_MEM_ARGS=()
    case "${KAMAILIO_MEM:-}" in
        "") ;;
        qm|fm|tlsf) KAMAILIO_MEM_ARGS=(-x "$KAMAILIO_MEM") ;;
        *) echo "load.sh: KAMAILIO_MEM takes qm, fm or tlsf" >&2; exit 2 ;;
    esac
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sosrouter-load.XXXXXX")"
STARTED=()        # every PID this script started
KIDS=()           # PID:start-time of every child a started relay forked (Kamailio)
ROUTER_PID=""
WRAP=()           # a command the router runs under (callgrind)
START_TENTHS=100  # how long the router may take to bind, in tenths of a second
RESULTS="$WORK/results.txt"
: >"$RESULTS"

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    reap_kids
    if [ "$KEEP" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# A process's start time (field 22 of /proc/PID/stat), which tells it
# from a later process that reuses its PID.
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
# Every process below PID (children, their children, ...), one a line, by
# the parent PIDs of /proc/*/stat.
descendants() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
        { pid = $1; rest = $0; sub(/.*\) /, "", rest); split(rest, f, " "); kids[f[2]] = kids[f[2]] " " pid }
        END {
            queue[1] = root; n = 1
            for (i = 1; i <= n; i++) {
                m = split(kids[queue[i]], k, " ")
                for (j = 1; j <= m; j++) { print k[j]; queue[++n] = k[j] }
            }
        }'
}
# reap_kids [PID...]: the children of a relay end with it. Once its main
# process is gone, each recorded child (those given, or all) gets 5 s to
# go, then is ended by its PID; a PID now of another process is left alone.
reap_kids() {
    local entry pid st n left mine=()
    for entry in "${KIDS[@]}"; do
        if [ $# = 0 ] || [[ " $* " == *" ${entry%%:*} "* ]]; then mine+=("$entry"); fi
    done
    for n in $(seq 1 50); do
        left=0
        for entry in "${mine[@]}"; do
            pid="${entry%%:*}" st="${entry#*:}"
            [ "$(start_time "$pid")" = "$st" ] && left=1
        done
        [ $left = 0 ] && return 0
        sleep 0.1
    done
    for entry in "${mine[@]}"; do
        pid="${entry%%:*}" st="${entry#*:}"
        if [ "$(start_time "$pid")" = "$st" ]; then
            say "a relay child (pid $pid) outlived its main process; ending it"
            echo "kid_outlived $pid" >>"$RESULTS"
            kill "$pid" 2>/dev/null || true
        fi
    done
}

# ---------------------------------------------------------------- binary

# private_binary GIVEN NAME TARGET_KIND PATH_IN_TARGET: the binary GIVEN
# (an environment variable's value), else built by cargo, copied into the
# work directory as NAME, so that a build elsewhere cannot swap it mid-run.
private_binary() {
    local given="$1" name="$2" kind="$3" built="$4" src
    if [ -n "$given" ]; then
        src="$given"
    else
        say "building $name (cargo build --release --$kind $name)"
        (cd "$ROOT" && cargo build --release "--$kind" "$name" --quiet)
        src="${CARGO_TARGET_DIR:-$ROOT/target}/release/$built"
    fi
    [ -x "$src" ] || { echo "load.sh: no $name binary at $src" >&2; exit 2; }
    cp "$src" "$WORK/$name"
}
if uses_relay sosrouter || uses_relay static; then
    private_binary "${SOSROUTER_BIN:-}" sosrouter bin sosrouter
    BIN="$WORK/sosrouter"
fi
if uses_relay floor; then
    private_binary "${UDP_FLOOR_BIN:-}" udp_floor example examples/udp_floor
    FLOOR="$WORK/udp_floor"
fi

# ---------------------------------------------------------------- ports

port_busy() {
    ss -Hlnut 2>/dev/null | awk '{print $5}' | grep -q "[:.]$1\$"
}

# The router on BASE, trunks on BASE+1.., callers on BASE+11..; Kamailio on
# BASE+20, the floor on BASE+21, the static router of --compare on BASE+22
# (see relay_port); the router's metrics on BASE+30, its admin API on BASE+31.
pick_ports() {
    local tries=0 base p ok
    while [ $tries -lt 50 ]; do
        base=$((20000 + (RANDOM % 400) * 50))
        ok=1
        for p in $base $(seq $((base + 1)) $((base + PAIRS))) $(seq $((base + 11)) $((base + 10 + PAIRS))) \
            $((base + 20)) $((base + 21)) $((base + 22)) $((base + 30)) $((base + 31)); do
            if port_busy "$p"; then ok=0; break; fi
        done
        if [ $ok = 1 ]; then
            echo "$base"
            return 0
        fi
        tries=$((tries + 1))
    done
    return 1
}
BASE="$(pick_ports)" || { echo "load.sh: no free port block found" >&2; exit 2; }
METRICS_PORT=$((BASE + 30))
ADMIN_PORT=$((BASE + 31))
# Where each relay listens; the callers send to the port of the relay
# being measured, the trunks answer whoever sent the request.
relay_port() {
    case "$1" in
        sosrouter) echo "$BASE" ;;
        kamailio) echo $((BASE + 20)) ;;
        floor) echo $((BASE + 21)) ;;
        static) if [ "$MODE" = compare ]; then echo $((BASE + 22)); else echo "$BASE"; fi ;;
    esac
}
# is_router [RELAY]: the relay is sosrouter, in either set-up.
is_router() { case "${1:-$RELAY}" in sosrouter|static) return 0 ;; *) return 1 ;; esac; }
# The relay routes every call to one trunk (sosrouter's emergency routing):
# every caller dials 911 and one SIPp trunk takes all the calls.
one_trunk() { [ "$RELAY" = sosrouter ]; }
ROUTER_PORT="$(relay_port "$RELAY")"

# ---------------------------------------------------------------- router

# write_config FILE udp|tcp TAG: the router's configuration, in the set-up
# of RELAY (sosrouter: the operator set-up; static: the static relay).
write_config() {
    local file="$1" proto="$2" tag="${3:-}" i
    {
        if [ "$RELAY" = sosrouter ] || [ "$tag" = soak ] || [ "$tag" = flood ]; then
            # The soak samples the transactions open beside the RSS; an
            # operator serves metrics anyway.
            printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$METRICS_PORT"
        fi
        if [ -n "$MAX_TXNS" ]; then
            printf '[sip.overload]\nmax_transactions = %s\n\n' "$MAX_TXNS"
        fi
        cat <<EOF
# Written by benches/load.sh.
[sip]
listen = ["udp:127.0.0.1:$ROUTER_PORT", "tcp:127.0.0.1:$ROUTER_PORT"]
advertise = "127.0.0.1:$ROUTER_PORT"
allow = ["127.0.0.0/8"]

[health]
interval_s = 0

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.0/8"]
country = "US"
EOF
        if [ "$RELAY" = sosrouter ]; then
            mkdir -p "$WORK/db-$tag"
            cat <<EOF

# The operator set-up: emergency routing by the shipped country rules and
# service-area data, the example inventory imported into SQLite, call
# records written there. Every call goes to one SIPp trunk: every PSAP
# by the PSAP trunk, and the screening center (where c01 goes) by the
# screening trunk, both that SIPp trunk. The test and last-resort trunks
# lead nowhere (port 9): a call that fails over to the last resort fails
# and shows as a failure. SIPp trunks count OPTIONS as calls, so no probes.
[log]
level = "$LOG_LEVEL"

[routing]
mode = "emergency"

[emergency]
inventory = "$ROOT/tests/corpus/emergency-invites/inventory.tsv"
domain = "sosrouter.bench.example"

[emergency.psap_trunks]
"*" = "psap"

[database]
data_dir = "$WORK/db-$tag"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:$((BASE + 1))"
transport = "$proto"
# The INVITE is about 2.5 KB once relayed; over UDP it stays on UDP.
tcp_fallback = false

# c01's location was entered by hand (method Manual), which the US rules
# do not trust: the call goes to the screening center, as the corpus
# manifest expects (route screening, reason screening-untrusted-location).
[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:$((BASE + 1))"
transport = "$proto"
tcp_fallback = false

[[trunk]]
name = "test"
kind = "test"
uri = "sip:127.0.0.1:9"

[[trunk]]
name = "last-resort"
kind = "last-resort"
uri = "sip:127.0.0.1:9"
EOF
            return 0
        fi
        cat <<EOF

# The relay alone, by the static table (the Kamailio figure is for the same
# relay), one trunk per SIPp pair; SIPp trunks count OPTIONS as calls, so
# no probes.
[log]
level = "warn"

[routing]
mode = "static"
EOF
        for i in $(seq 1 "$PAIRS"); do
            cat <<EOF

[[trunk]]
name = "psap$i"
kind = "psap"
uri = "sip:127.0.0.1:$((BASE + i))"
transport = "$proto"
# The INVITE is about 2.2 KB once relayed; over UDP it stays on UDP.
tcp_fallback = false

[[route]]
numbers = ["${NUMBERS[$((i - 1))]}"]
targets = ["psap$i"]
EOF
        done
    } >"$file"
}

# write_kamailio_config FILE udp|tcp: benches/load/kamailio.cfg with its
# placeholders filled (transport, listen address, each pair's number and
# trunk).
write_kamailio_config() {
    local file="$1" proto="$2" i args=(-e "s/@LISTEN@/127.0.0.1:$ROUTER_PORT/g" -e "s/@PROTO@/$proto/g")
    if [ "$proto" = tcp ]; then
        args+=(-e "s/@DISABLE_TCP@/no/g" -e "s/@TRANSPORT@/;transport=tcp/g")
    else
        args+=(-e "s/@DISABLE_TCP@/yes/g" -e "s/@TRANSPORT@//g")
    fi
    for i in $(seq 1 8); do
        args+=(-e "s/@NUMBER$i@/${NUMBERS[$((i - 1))]}/g" -e "s/@TRUNK$i@/127.0.0.1:$((BASE + i))/g")
    done
    sed "${args[@]}" "$KAMAILIO_CFG" >"$file"
    if grep -v '^[[:space:]]*#' "$file" | grep -q '@[A-Z0-9_]*@'; then
        say "load.sh: a placeholder of $KAMAILIO_CFG was left unfilled"
        exit 2
    fi
}

# start_router udp|tcp TAG: starts the relay RELAY (sosrouter, kamailio or
# floor) on ROUTER_PORT and records its PIDs: ROUTER_PID, its main
# process, and RELAY_PIDS, every process whose CPU time counts.
start_router() {
    local proto="$1" tag="$2" cfg log n=0 i pairs=() kids prev entry
    RELAY_KIDS=""
    case "$RELAY" in
        sosrouter | static)
            cfg="$WORK/router-$tag.toml" log="$WORK/router-$tag.log"
            if [ "$RELAY" = static ] && [ "$MODE" = compare ]; then
                cfg="$WORK/router-static-$tag.toml" log="$WORK/router-static-$tag.log"
            fi
            write_config "$cfg" "$proto" "$tag"
            # Relative paths of the configuration (the inventory) are taken
            # from the router's working directory: the repository root.
            (cd "$ROOT" && exec "${WRAP[@]}" "$BIN" run --config "$cfg") >"$log" 2>&1 &
            ;;
        kamailio)
            cfg="$WORK/kamailio-$tag.cfg" log="$WORK/kamailio-$tag.log"
            write_kamailio_config "$cfg" "$proto"
            mkdir -p "$WORK/kamailio-run"
            # -DD: the main process stays in the foreground (its PID is $!)
            # and forks its children; -E: log to stderr; 8 MB of private
            # memory. tm keeps each transaction in shared memory until 5 s
            # after its final reply: at 500 calls/s the 64 MB of Debian's
            # default ran out ("could not allocate shared memory") and calls
            # failed, so the CPU runs get 128 MB; the ramp, up to 4,000
            # calls/s, ran out of 128 MB from 1,400 calls/s and gets 2 GB.
            local shm=128
            [ "$tag" = cpu ] || shm=2048
            "$KAMAILIO" -f "$cfg" -DD -E -m "$shm" -M 8 "${KAMAILIO_MEM_ARGS[@]}" \
                -Y "$WORK/kamailio-run" -w "$WORK/kamailio-run" >"$log" 2>&1 &
            ;;
        floor)
            log="$WORK/floor-$tag.log"
            for i in $(seq 1 "$PAIRS"); do pairs+=("$((BASE + 10 + i)):$((BASE + i))"); done
            "$FLOOR" "127.0.0.1:$ROUTER_PORT" "${pairs[@]}" >"$log" 2>&1 &
            ;;
    esac
    ROUTER_PID=$!
    STARTED+=("$ROUTER_PID")
    ROUTER_LOG="$log"
    # Ready when its sockets are bound: UDP and TCP for the router, the
    # run's transport for Kamailio, UDP for the floor.
    while ! { port_busy "$ROUTER_PORT" &&
        { ! is_router || ss -Hlnt | awk '{print $4}' | grep -q "[:.]$ROUTER_PORT\$"; }; }; do
        sleep 0.1
        n=$((n + 1))
        if ! kill -0 "$ROUTER_PID" 2>/dev/null || [ $n -gt "$START_TENTHS" ]; then
            say "the $(is_router && echo router || echo "$RELAY relay") did not start:"
            cat "$log" >&2
            exit 1
        fi
    done
    # The operator set-up imports the inventory and loads it after the
    # sockets are bound (calls meanwhile are routed by the country
    # defaults): the run starts once /readyz says the inventory is loaded,
    # so that neither the import nor the load is counted as calls' work.
    if [ "$RELAY" = sosrouter ]; then
        n=0
        until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$ADMIN_PORT/readyz?inventory=loaded" 2>/dev/null)" = 200 ]; do
            sleep 0.1
            n=$((n + 1))
            if ! kill -0 "$ROUTER_PID" 2>/dev/null || [ $n -gt $((START_TENTHS * 3)) ]; then
                say "the router did not load its inventory:"
                cat "$log" >&2
                exit 1
            fi
        done
    fi
    sleep 0.5
    RELAY_PIDS=("$ROUTER_PID")
    if [ "$RELAY" = kamailio ]; then
        # Its children are forked once the socket is bound: the set is
        # taken when it has stopped changing.
        prev=""
        for n in $(seq 1 50); do
            kids="$(descendants "$ROUTER_PID" | sort -n | tr '\n' ' ')"
            [ -n "$kids" ] && [ "$kids" = "$prev" ] && break
            prev="$kids"
            sleep 0.2
        done
        for entry in $kids; do
            RELAY_PIDS+=("$entry")
            KIDS+=("$entry:$(start_time "$entry")")
        done
        RELAY_KIDS="$kids"
        say "kamailio: main process $ROUTER_PID, children $kids"
        echo "kamailio_children $(wc -w <<<"$kids")" >>"$RESULTS"
    fi
}

# Kamailio: a changed set of processes means ticks lost with a process
# that ended; said in the results.
check_pidset() {
    local now
    [ "$RELAY" = kamailio ] || return 0
    now="$(descendants "$ROUTER_PID" | sort -n | tr '\n' ' ')"
    if [ "$now" != "$RELAY_KIDS" ]; then
        say "kamailio's processes changed during the run: $RELAY_KIDS-> $now"
        echo "pidset_changed $RELAY $1" >>"$RESULTS"
    fi
}

stop_router() {
    check_router
    kill "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
    # Kamailio's main process ends its children; check they are gone.
    # shellcheck disable=SC2086
    [ -n "${RELAY_KIDS:-}" ] && reap_kids $RELAY_KIDS
    RELAY_KIDS=""
}

# Exits 1, with the log, if the relay is gone.
check_router() {
    if [ -n "$ROUTER_PID" ] && ! kill -0 "$ROUTER_PID" 2>/dev/null; then
        if is_router; then
            say "THE ROUTER DIED (pid $ROUTER_PID); its log ends with:"
        else
            say "THE RELAY $RELAY DIED (pid $ROUTER_PID); its log ends with:"
        fi
        tail -n 40 "$ROUTER_LOG" >&2 || true
        echo "router died" >>"$RESULTS"
        print_summary || true
        exit 1
    fi
}

# --compare keeps the three relays running side by side, each on its own
# port; select_relay makes one of them the one measured.
declare -A R_PID R_LOG R_PIDS R_KIDS
save_relay() {
    R_PID[$RELAY]="$ROUTER_PID" R_LOG[$RELAY]="$ROUTER_LOG"
    R_PIDS[$RELAY]="${RELAY_PIDS[*]}" R_KIDS[$RELAY]="${RELAY_KIDS:-}"
}
select_relay() {
    RELAY="$1"
    ROUTER_PORT="$(relay_port "$RELAY")"
    ROUTER_PID="${R_PID[$RELAY]:-}" ROUTER_LOG="${R_LOG[$RELAY]:-}"
    read -r -a RELAY_PIDS <<<"${R_PIDS[$RELAY]:-}"
    RELAY_KIDS="${R_KIDS[$RELAY]:-}"
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# utime and stime apart.
cpu_split() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
# Context switches of all the process's threads, voluntary + involuntary.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
# The same, summed over every process of the relay (RELAY_PIDS: the router
# and the floor are one process, Kamailio its main process and children).
relay_cpu_split() {
    local pid
    for pid in "${RELAY_PIDS[@]}"; do cpu_split "$pid"; done | awk '{u += $1; s += $2} END {print u + 0, s + 0}'
}
relay_cpu_ticks() { relay_cpu_split | awk '{print $1 + $2}'; }
relay_ctx_switches() {
    local pid
    for pid in "${RELAY_PIDS[@]}"; do ctx_switches "$pid"; done | awk '{s += $1} END {print s + 0}'
}
# The relay's memory: RSS of its one process, or for Kamailio the PSS of
# all its processes added up (each maps the shared memory: RSS would count
# it once per process).
relay_mem_kb() {
    local pid
    if [ "$RELAY" = kamailio ]; then
        for pid in "${RELAY_PIDS[@]}"; do
            awk '/^Pss:/ {print $2; exit}' "/proc/$pid/smaps_rollup" 2>/dev/null
        done | awk '{s += $1} END {print s + 0}'
    else
        rss_kb "$ROUTER_PID"
    fi
}
# The router's open transactions, from its metrics when it serves them
# (the soak), else '-'.
open_transactions() {
    curl -s --max-time 1 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
        awk '$1 == "sosrouter_transactions_open" {print $2; found = 1; exit} END {if (!found) print "-"}'
}
# Datagrams the kernel dropped for a full socket receive buffer (every
# socket of this network namespace, not only the router's).
udp_drops() { awk '$1 == "Udp:" && $2 ~ /^[0-9]/ {print $6; exit}' /proc/net/snmp; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# Busy and total jiffies of the whole machine.
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }

# ---------------------------------------------------------------- SIPp

# run_load udp|tcp RATE CALLS DIR [SAMPLE_SECONDS]
# Starts PAIRS trunks and callers, waits for the callers, samples the
# router's RSS every SAMPLE_SECONDS (to DIR/rss), and writes DIR/summary:
# "ok failed retrans setup_ms expected", and DIR/datagrams: "sent
# received", the datagrams the SIPp ends sent and received (-trace_counts).
run_load() {
    local proto="$1" rate="$2" calls="$3" dir="$4" every="${5:-2}"
    local t i r per_rate per_calls limit uas_pids=() uac_pids=() pid alive start now last
    mkdir -p "$dir"
    t=u1
    [ "$proto" = tcp ] && t=t1
    per_rate=$((rate / PAIRS))
    per_calls=$((calls / PAIRS))
    limit=$((per_calls / per_rate + 60))
    # Emergency routing sends every call to one trunk (screening, for
    # c01): one SIPp trunk takes them all, and every caller dials 911.
    local trunks=$PAIRS trunk_calls=$per_calls
    if one_trunk; then
        trunks=1 trunk_calls=$((per_calls * PAIRS))
    fi
    for i in $(seq 1 "$trunks"); do
        (cd "$dir" && exec sipp -sf "$UAS_XML" -i 127.0.0.1 -p $((BASE + i)) -t "$t" \
            -m "$trunk_calls" -timeout "$((limit + 20))s" -nostdin -buff_size "$SIPP_BUFFER" \
            -trace_stat -stf "$dir/uas$i.csv" -fd 1 -trace_counts \
            -trace_err -error_file "$dir/uas$i.err" >"$dir/uas$i.out" 2>&1) &
        uas_pids+=("$!")
        STARTED+=("$!")
    done
    sleep 0.5
    for i in $(seq 1 "$PAIRS"); do
        # A caller of its own rate makes calls for as long as the others.
        r="${PAIR_RATE[$((i - 1))]:-$per_rate}"
        (cd "$dir" && exec sipp "127.0.0.1:$ROUTER_PORT" -sf "$UAC_XML" -s "$(one_trunk && echo 911 || echo "${NUMBERS[$((i - 1))]}")" \
            -i "${PAIR_IP[$((i - 1))]:-127.0.0.1}" -p $((BASE + 10 + i)) -t "$t" \
            -r "$r" -m $((per_calls * r / per_rate)) -d "$HOLD_MS" -key caller +12125550142 \
            -recv_timeout 10000 -timeout "${limit}s" -nostdin -buff_size "$SIPP_BUFFER" \
            -trace_stat -stf "$dir/uac$i.csv" -fd 1 -trace_counts \
            -trace_err -error_file "$dir/uac$i.err" >"$dir/uac$i.out" 2>&1) &
        uac_pids+=("$!")
        STARTED+=("$!")
    done
    start=$SECONDS
    last=-1000
    : >"$dir/rss"
    while :; do
        alive=0
        for pid in "${uac_pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        check_router
        now=$SECONDS
        if [ $((now - last)) -ge "$every" ]; then
            echo "$((now - start)) $(relay_mem_kb) $(open_transactions)" >>"$dir/rss"
            last=$now
        fi
        [ $alive = 0 ] && break
        sleep 1
    done
    for pid in "${uac_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    # The trunks finish once the last BYE is answered; bounded.
    for i in $(seq 1 20); do
        alive=0
        for pid in "${uas_pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ $alive = 0 ] && break
        sleep 0.5
    done
    for pid in "${uas_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    check_router
    summarize_uac "$dir" "$calls" >"$dir/summary"
    count_datagrams "$dir" >"$dir/datagrams"
}

# The datagrams the SIPp processes of a run sent and received, from the
# last line of each one's -trace_counts file: every message of its
# scenario, sent or received, retransmissions and unexpected messages
# included. All of them go through the relay, so what SIPp sent is what
# the relay received and what SIPp received is what the relay sent (less
# any datagram the kernel dropped).
count_datagrams() {
    awk -F';' '
        FNR == 1 { hdr[FILENAME] = $0; next }
        { last[FILENAME] = $0 }
        END {
            sent = 0; recv = 0
            for (f in last) {
                nh = split(hdr[f], h, ";"); split(last[f], v, ";")
                split("", kind)
                # Columns are STEP_MESSAGE_KIND; a step sends or receives.
                for (i = 1; i <= nh; i++) {
                    n = split(h[i], a, "_")
                    if (n >= 3 && a[n] == "Sent") kind[a[1]] = "sent"
                    if (n >= 3 && a[n] == "Recv") kind[a[1]] = "recv"
                }
                for (i = 1; i <= nh; i++) {
                    n = split(h[i], a, "_")
                    if (n < 3) continue
                    if (a[n] == "Sent" || (a[n] == "Retrans" && kind[a[1]] == "sent")) sent += v[i]
                    if (a[n] == "Recv" || a[n] == "Unexp" || (a[n] == "Retrans" && kind[a[1]] == "recv")) recv += v[i]
                }
            }
            print sent, recv
        }' "$1"/*_counts.csv 2>/dev/null || echo "0 0"
}

# Sums the callers' last statistics lines: successful and failed calls,
# retransmissions, the mean INVITE-to-200 time (ms, SIPp counts whole
# milliseconds) and the rate the callers reached.
summarize_uac() {
    local dir="$1" expected="$2" files="${3:-uac[0-9]*.csv}"
    awk -F';' -v expected="$expected" '
        FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { last[FILENAME] = $0 }
        END {
            ok = 0; failed = 0; retrans = 0; rt = 0; n = 0; rate = 0
            for (f in last) {
                split(last[f], v, ";")
                ok += v[col["SuccessfulCall(C)"]]
                failed += v[col["FailedCall(C)"]]
                retrans += v[col["Retransmissions(C)"]]
                # hh:mm:ss:uuuuuu
                split(v[col["ResponseTime1(C)"]], t, ":")
                rt += (t[1] * 3600 + t[2] * 60 + t[3]) * 1000 + t[4] / 1000
                rate += v[col["CallRate(C)"]]
                n++
            }
            printf "%d %d %d %.1f %d %.0f\n", ok, failed, retrans, (n ? rt / n : 0), expected, rate
        }' "$dir"/$files 2>/dev/null || echo "0 0 0 0 $expected 0"
}

# ---------------------------------------------------------------- phases

# ramp udp|tcp: steps the aggregate rate up until a step has a failed
# call (after one retry) or the callers fall short of the asked rate.
ramp() {
    local proto="$1" rate calls dir c0 c1 m0 m1 mt0 mt1 d0 d1 ok failed retrans setup expected achieved
    local verdict best=0 tries wall t0 stop=""
    start_router "$proto" "ramp-$proto"
    if is_router; then
        echo "rss_rest_$proto $(rss_kb "$ROUTER_PID")" >>"$RESULTS"
    else
        echo "mem_rest $RELAY $proto $(relay_mem_kb)" >>"$RESULTS"
    fi
    for rate in "${RATES[@]}"; do
        calls=$((rate * STEP_SECONDS))
        calls=$((calls - calls % PAIRS))
        for tries in 1 2; do
            dir="$WORK/ramp-$proto-$rate-$tries"
            c0=$(relay_cpu_ticks)
            read -r m0 mt0 < <(machine_ticks)
            d0=$(udp_drops)
            t0=$(date +%s%N)
            say "$proto: $rate calls/s, $calls calls (try $tries)"
            run_load "$proto" "$rate" "$calls" "$dir"
            wall=$(( ($(date +%s%N) - t0) / 1000000 ))
            c1=$(relay_cpu_ticks)
            read -r m1 mt1 < <(machine_ticks)
            d1=$(udp_drops)
            read -r ok failed retrans setup expected achieved <"$dir/summary"
            verdict=clean
            if [ "$ok" -ne "$expected" ] || [ "$failed" -ne 0 ]; then
                verdict=FAILED
            elif [ $((achieved * 100)) -lt $((rate * MIN_ACHIEVED_PCT)) ]; then
                verdict=short
            fi
            # Router CPU: us per call, not drained (the step's own
            # timers are still pending) and as a share of one core over
            # the step's wall time; machine CPU as a share of all cores.
            echo "step $proto $rate $achieved $calls $ok $failed $retrans $setup" \
                "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$ok" 'BEGIN {printf "%.0f", n ? c / hz * 1e6 / n : 0}')" \
                "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v w="$wall" 'BEGIN {printf "%.0f", 100 * c / hz / (w / 1000)}')" \
                "$(awk -v b=$((m1 - m0)) -v t=$((mt1 - mt0)) 'BEGIN {printf "%.0f", t ? 100 * b / t : 0}')" \
                "$((d1 - d0))" \
                "$(sort -n -k2 "$dir/rss" | tail -n 1 | awk '{print $2}')" \
                "$verdict" "$tries" >>"$RESULTS"
            say "  -> $ok/$expected ok, $failed failed, $retrans retransmissions, reached $achieved calls/s: $verdict"
            [ "$verdict" = clean ] && break
            # Let the router's timers of the step run out first.
            sleep 5
        done
        case "$verdict" in
            clean) best=$rate ;;
            FAILED) stop="failed calls"; break ;;
            short) stop="SIPp short of the rate"; break ;;
        esac
    done
    echo "best $proto $best ${stop:-end of the steps}" >>"$RESULTS"
    stop_router
}

# cpu_run RUN DIR: one run of CPU_CALLS calls at CPU_RATE over UDP on the
# relay started; counts its ticks (every process of it) from before its
# first call until its timers are done.
cpu_run() {
    local run="$1" dir="$2" c0 c1 u0 s0 u1 s1 x0 x1 ok failed retrans setup expected achieved idle
    local sent recv load
    load="$(cut -d' ' -f1 /proc/loadavg)"
    read -r u0 s0 < <(relay_cpu_split)
    x0=$(relay_ctx_switches)
    say "cpu run $run/$CPU_RUNS ($RELAY): $CPU_CALLS calls at $CPU_RATE calls/s over UDP, then ${DRAIN_SECONDS}s of drain (load average $load)"
    run_load udp "$CPU_RATE" "$CPU_CALLS" "$dir" 2
    idle=0
    while [ $idle -lt "$DRAIN_SECONDS" ]; do
        sleep 1
        idle=$((idle + 1))
        check_router
    done
    read -r u1 s1 < <(relay_cpu_split)
    x1=$(relay_ctx_switches)
    check_pidset "$run"
    c0=$((u0 + s0))
    c1=$((u1 + s1))
    read -r ok failed retrans setup expected achieved <"$dir/summary"
    read -r sent recv <"$dir/datagrams"
    echo "cpu $run $CPU_CALLS $ok $failed $retrans $((c1 - c0))" \
        "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$ok" 'BEGIN {printf "%.1f", n ? c / hz * 1e6 / n : 0}')" \
        "$(sort -n -k2 "$dir/rss" | tail -n 1 | awk '{print $2}')" \
        "$(relay_mem_kb)" "$((u1 - u0))" "$((s1 - s0))" \
        "$(awk -v x=$((x1 - x0)) -v n="$ok" 'BEGIN {printf "%.1f", n ? x / n : 0}')" "$achieved" \
        "$RELAY" \
        "$(awk -v d="$sent" -v n="$ok" 'BEGIN {printf "%.2f", n ? d / n : 0}')" \
        "$(awk -v d="$recv" -v n="$ok" 'BEGIN {printf "%.2f", n ? d / n : 0}')" \
        "$load" >>"$RESULTS"
    say "  -> $ok/$expected ok, $failed failed; $((c1 - c0)) ticks"
}

# Three runs of CPU_CALLS calls at CPU_RATE over UDP on one relay.
cpu_runs() {
    local run
    start_router udp cpu
    if is_router; then
        echo "rss_rest_cpu $(rss_kb "$ROUTER_PID")" >>"$RESULTS"
    else
        echo "mem_rest $RELAY cpu $(relay_mem_kb)" >>"$RESULTS"
    fi
    for run in $(seq 1 "$CPU_RUNS"); do
        cpu_run "$run" "$WORK/cpu-$run"
    done
    if is_router; then
        echo "hwm_cpu $(hwm_kb "$ROUTER_PID")" >>"$RESULTS"
    fi
    stop_router
}

# --compare: the three relays run side by side, each on its own port and
# idle while another is measured; the CPU runs go round-robin (sosrouter,
# kamailio, floor, then again), CPU_RUNS rounds, so that the machine's
# other load falls on all three alike.
compare_runs() {
    local r round
    for r in "${RELAYS[@]}"; do
        select_relay "$r"
        start_router udp "cpu"
        save_relay
        if [ "$r" = sosrouter ]; then
            echo "rss_rest_cpu $(rss_kb "$ROUTER_PID")" >>"$RESULTS"
        else
            echo "mem_rest $r cpu $(relay_mem_kb)" >>"$RESULTS"
        fi
    done
    for round in $(seq 1 "$CPU_RUNS"); do
        for r in "${RELAYS[@]}"; do
            select_relay "$r"
            cpu_run "$round" "$WORK/cpu-$r-$round"
        done
    done
    for r in "${RELAYS[@]}"; do
        select_relay "$r"
        [ "$r" = sosrouter ] && echo "hwm_cpu $(hwm_kb "$ROUTER_PID")" >>"$RESULTS"
        stop_router
        R_PID[$r]=""
    done
}

soak() {
    local dir="$WORK/soak" calls=$((SOAK_RATE * SOAK_SECONDS)) c0 c1 i
    start_router udp "$MODE"
    echo "rss_rest_soak $(rss_kb "$ROUTER_PID")" >>"$RESULTS"
    c0=$(cpu_ticks "$ROUTER_PID")
    say "soak: $calls calls at $SOAK_RATE calls/s over UDP; RSS every ${SOAK_SAMPLE}s"
    run_load udp "$SOAK_RATE" "$calls" "$dir" "$SOAK_SAMPLE"
    c1=$(cpu_ticks "$ROUTER_PID")
    read -r ok failed retrans setup expected achieved <"$dir/summary"
    echo "soak $calls $ok $failed $retrans $setup $((c1 - c0)) $achieved" >>"$RESULTS"
    while read -r s kb txns; do
        echo "soak_rss $s $kb $txns" >>"$RESULTS"
    done <"$dir/rss"
    if [ "$MODE" = flood ]; then
        for i in 1 2; do
            echo "flood_caller $i ${PAIR_IP[$((i - 1))]} ${PAIR_RATE[$((i - 1))]}" \
                "$(summarize_uac "$dir" $((PAIR_RATE[i - 1] * SOAK_SECONDS)) "uac$i.csv")" >>"$RESULTS"
        done
        curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
            awk '$1 ~ /^sosrouter_overload_refused_total\{/ {print "flood_refused", $1, $2}' >>"$RESULTS" || true
        echo "flood_warnings $(grep -c 'emergency calls refused with 503' "$ROUTER_LOG" || true)" >>"$RESULTS"
    fi
    say "soak done; ${DRAIN_SECONDS}s for the router's timers to run out"
    sleep "$DRAIN_SECONDS"
    check_router
    echo "soak_rss_after $(rss_kb "$ROUTER_PID")" >>"$RESULTS"
    stop_router
}

# ---------------------------------------------------------------- report

# The router under callgrind: counters zeroed once it is ready (start-up is
# not counted), INSTR_CALLS calls, the timers drained, counters dumped.
instructions() {
    local dir="$WORK/instr" out="$WORK/callgrind.out" dump total ok failed retrans setup expected achieved
    # Fair scheduling: valgrind runs one thread at a time, and without it
    # the database threads of the operator set-up can wait seconds for the
    # SIP thread, holding up calls.
    WRAP=(valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out" --dump-instr=no)
    START_TENTHS=600
    start_router udp instr
    callgrind_control -z "$ROUTER_PID" >/dev/null 2>&1
    say "instructions: $INSTR_CALLS calls at $INSTR_RATE calls/s over UDP under callgrind, then ${DRAIN_SECONDS}s of drain"
    run_load udp "$INSTR_RATE" "$INSTR_CALLS" "$dir" 2
    sleep "$DRAIN_SECONDS"
    check_router
    callgrind_control -d "$ROUTER_PID" >/dev/null 2>&1
    dump="$(ls -t "$out".* 2>/dev/null | head -n 1)"
    [ -n "$dump" ] || { say "no callgrind dump in $WORK"; exit 1; }
    total="$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
    read -r ok failed retrans setup expected achieved <"$dir/summary"
    stop_router
    echo
    echo "sosrouter load benchmark (instructions), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "router user-space instructions under callgrind, $INSTR_CALLS calls at $INSTR_RATE calls/s over UDP, timers drained, start-up not counted;"
    echo "$(relay_desc)"
    echo "  $ok/$expected calls ok, $failed failed; $total instructions; $(awk -v t="$total" -v n="$ok" 'BEGIN {printf "%.0f", n ? t / n : 0}') per call"
    echo "  (kernel time, the system calls and the loopback sends, is not in this figure; see --cpu)"
}

# What ran in the router's place, for the summary.
relay_desc() {
    local r out=()
    for r in "${RELAYS[@]}"; do
        case "$r" in
            sosrouter) out+=("sosrouter: the operator set-up (emergency routing, inventory in SQLite, call records, metrics and admin listeners), log level $LOG_LEVEL") ;;
            static) out+=("static: sosrouter as the static relay, log level warn, no database") ;;
            kamailio) out+=("kamailio: benches/load/kamailio.cfg, tm stateful relay, 1 UDP worker, warnings only, memory manager ${KAMAILIO_MEM:-qm (its default)}") ;;
            floor) out+=("floor: benches/load/udp_floor.rs, bare UDP forwarding, no parsing") ;;
        esac
    done
    printf '%s' "${out[0]}"
    [ ${#out[@]} -gt 1 ] && printf '; %s' "${out[@]:1}"
    echo
}

# The CPU runs: each relay's runs and median, and with --compare a table
# of the three side by side.
print_cpu() {
    local r
    for r in "${RELAYS[@]}"; do
        awk -v r="$r" '$1 == "cpu" && $15 == r {f = 1} END {exit !f}' "$RESULTS" || continue
        echo
        case "$r" in
            static) echo "sosrouter as the static relay, CPU per call at $CPU_RATE calls/s over UDP ($CPU_CALLS calls per run, ${DRAIN_SECONDS}s drain, CLK_TCK $HZ):" ;;
            sosrouter) echo "sosrouter CPU per call at $CPU_RATE calls/s over UDP ($CPU_CALLS calls per run, ${DRAIN_SECONDS}s drain, CLK_TCK $HZ):" ;;
            kamailio) echo "kamailio CPU per call, its main process and its $(awk '$1 == "kamailio_children" {n = $2} END {print n + 0}' "$RESULTS") children added up," \
                "at $CPU_RATE calls/s over UDP ($CPU_CALLS calls per run, ${DRAIN_SECONDS}s drain, CLK_TCK $HZ):" ;;
            floor) echo "floor CPU per call at $CPU_RATE calls/s over UDP ($CPU_CALLS calls per run, ${DRAIN_SECONDS}s drain, CLK_TCK $HZ):" ;;
        esac
        awk -v r="$r" '$1 == "cpu" && $15 == r {
                printf "  %s run %d: %d/%d ok, %d failed, %d retransmissions, reached %d/s; %d ticks (user %d, system %d), %s us/call, %s context switches/call, %s peak %.1f MB; datagrams per call %s in, %s out; load average %s\n",
                    r, $2, $4, $3, $5, $6, $14, $7, $11, $12, $8, $13, (r == "kamailio" ? "PSS" : "RSS"), $9 / 1024, $16, $17, $18
            }' "$RESULTS"
        awk -v r="$r" '$1 == "cpu" && $15 == r {v[++n] = $8}
             END {
                 if (!n) exit
                 for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) {t = v[i]; v[i] = v[j]; v[j] = t}
                 med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
                 printf "  %s median %.1f us/call (min %.1f, max %.1f); target < 60: %s\n", r, med, v[1], v[n], (med < 60 ? "met" : "NOT met")
             }' "$RESULTS"
    done
    awk '$1 == "pidset_changed" {printf "NOTE: %s changed its set of processes during run %s (ticks of an ended process are lost)\n", $2, $3}
         $1 == "kid_outlived" {printf "NOTE: a relay child (pid %s) outlived its main process and was ended\n", $2}' "$RESULTS"
    [ "$MODE" = compare ] || return 0
    echo
    echo "comparison, $CPU_RUNS rounds interleaved (${RELAYS[*]}, then again), $CPU_CALLS calls at $CPU_RATE calls/s over UDP per run:"
    awk -v order="${RELAYS[*]}" '
        $1 == "cpu" {
            r = $15; k = ++n[r]
            us[r, k] = $8; usr[r] += $11; sys[r] += $12; split_[r] = split_[r] (k > 1 ? " " : "") $11 "/" $12
            ctx[r] = ctx[r] (k > 1 ? " " : "") $13; failed[r] += $5; retrans[r] += $6
            din[r] += $16; dout[r] += $17
            load[r] = load[r] (k > 1 ? " " : "") $18
        }
        END {
            printf "%-10s %-20s %8s  %-20s %6s  %-15s %6s %7s  %-13s  %s\n",
                "relay", "us/call (runs)", "median", "user/system ticks", "user%", "ctx sw/call", "failed", "retrans", "datagrams/call", "load average (1 min)"
            m = split(order, rs, " ")
            for (i = 1; i <= m; i++) {
                r = rs[i]; c = n[r]
                if (!c) continue
                runs = ""
                for (k = 1; k <= c; k++) { v[k] = us[r, k]; runs = runs (k > 1 ? " " : "") sprintf("%.1f", v[k]) }
                for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (v[b] < v[a]) {t = v[a]; v[a] = v[b]; v[b] = t}
                med[r] = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
                printf "%-10s %-20s %8.1f  %-20s %5.0f%%  %-15s %6d %7d  %-13s  %s\n",
                    r, runs, med[r], split_[r], (usr[r] + sys[r] ? 100 * usr[r] / (usr[r] + sys[r]) : 0), ctx[r], failed[r], retrans[r],
                    sprintf("%.2f/%.2f", din[r] / c, dout[r] / c), load[r]
            }
            if (("floor" in med)) {
                for (i = 1; i <= m; i++) {
                    r = rs[i]
                    if (r != "floor" && (r in med))
                        printf "%s median above the floor: %.1f us/call (%.1f times the floor)\n", r, med[r] - med["floor"], (med["floor"] ? med[r] / med["floor"] : 0)
                }
            }
            # The targets: sosrouter (operator set-up) at most 0.6 times
            # the CPU per call of Kamailio, and at most half of it above the floor.
            if (("kamailio" in med) && med["kamailio"] > 0) {
                for (i = 1; i <= m; i++) {
                    r = rs[i]
                    if (r != "sosrouter" && r != "static" || !(r in med)) continue
                    printf "%s against kamailio: %.2f times its median (target <= 0.60)", r, med[r] / med["kamailio"]
                    if (("floor" in med) && med["kamailio"] > med["floor"])
                        printf "; above the floor %.2f times (target <= 0.50)", (med[r] - med["floor"]) / (med["kamailio"] - med["floor"])
                    printf "\n"
                }
            }
        }' "$RESULTS"
    echo "(us/call: CPU time of all the relay's processes per successful call, timers drained; user%: user ticks"
    echo " over all ticks of the runs; datagrams/call: received/sent by the relay, mean of the runs, as counted by"
    echo " the SIPp ends; load average: at the start of each run)"
}

print_summary() {
    local cpu_model
    cpu_model="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo
    echo "sosrouter load benchmark ($MODE, relay ${RELAYS[*]}), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $cpu_model, $(nproc) cores, Linux $(uname -r); $(sipp -v 2>/dev/null | awk '/SIPp v/ {print $2; exit}' | tr -d ',') $(if uses_relay kamailio; then echo "Kamailio ${KAMAILIO_VERSION:-?}"; fi)"
    awk '$1 ~ /^loadavg_/ {sub("loadavg_", "", $1); printf "load average at the %s: %s %s %s; ", $1, $2, $3, $4} END {print ""}' "$RESULTS"
    echo "topology: $PAIRS SIPp callers on 127.0.0.1; sosrouter (operator set-up): all dial 911, one SIPp trunk answers;" \
        "the other relays: each caller its own number and trunk;" \
        "caller $(basename "$UAC_XML") ($([ "$UAC_XML" = "$SCEN/uac_emergency.xml" ] && echo "INVITE c01, 1.5 KB multipart SDP + PIDF-LO" || echo "its own INVITE")), call held ${HOLD_MS} ms; $(relay_desc)"
    if grep -q '^step ' "$RESULTS"; then
        echo
        printf '%-5s %6s %7s %6s %6s %6s %7s %8s %8s %7s %8s %7s %8s  %s\n' \
            proto asked reached calls ok failed retrans setup_ms us/call router% machine% drops rss_max verdict
        awk '$1 == "step" {
                printf "%-5s %6d %7d %6d %6d %6d %7d %8.1f %8d %7d%% %7d%% %7d %6.1fMB  %s%s\n",
                    $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 / 1024, $15, ($16 > 1 ? " (2nd try)" : "")
            }' "$RESULTS"
        if is_router; then
            echo "(us/call: router CPU per call in the step, timers not drained; router%: of one core;"
        else
            echo "(relay $RELAY; us/call: its CPU per call in the step, timers not drained; router%: its share of one core;"
        fi
        echo " machine%: all cores busy; drops: UDP receive-buffer drops on the whole machine)"
        awk -v relay="$RELAY" '$1 == "best" {why = $4; for (i = 5; i <= NF; i++) why = why " " $i
             printf "highest rate with no failed call, %s, %s: %d calls/s (ramp stopped: %s)\n", toupper($2), relay, $3, why}' "$RESULTS"
        awk '$1 == "tcp_skipped" {printf "TCP ramp skipped: %s relays over UDP only\n", $2}' "$RESULTS"
    fi
    if grep -q '^cpu ' "$RESULTS"; then
        print_cpu
    fi
    if grep -q '^rss_rest\|^mem_rest' "$RESULTS"; then
        echo
        awk '$1 ~ /^rss_rest/ {sub("rss_rest_", "", $1); printf "RSS at rest (%s router): %.1f MB\n", $1, $2 / 1024}' "$RESULTS"
        awk '$1 == "hwm_cpu" {printf "RSS peak over the CPU runs (VmHWM): %.1f MB\n", $2 / 1024}' "$RESULTS"
        awk '$1 == "mem_rest" {printf "%s at rest (%s): %.1f MB %s\n", $2, $3, $4 / 1024, ($2 == "kamailio" ? "PSS, all its processes" : "RSS")}' "$RESULTS"
    fi
    if grep -q '^flood_caller ' "$RESULTS"; then
        echo
        echo "flood: one caller floods emergency calls, another carrier calls at a modest rate; max_transactions $MAX_TXNS:"
        awk '$1 == "flood_caller" {printf "  caller %d on %s at %d calls/s: %d/%d ok, %d failed (503 Overloaded among them), %d retransmissions, reached %d calls/s, setup %.1f ms\n", $2, $3, $4, $5, $9, $6, $7, $10, $8}' "$RESULTS"
        awk '$1 == "flood_refused" {printf "  refused: %s %d\n", $2, $3}' "$RESULTS"
        awk '$1 == "flood_warnings" {printf "  router log: %d warning lines about refused emergency calls\n", $2}' "$RESULTS"
    fi
    if grep -q '^soak ' "$RESULTS"; then
        echo
        awk -v hz="$HZ" '$1 == "soak" {printf "soak: %d/%d ok, %d failed, %d retransmissions, reached %d calls/s, setup %.1f ms, router CPU %.1f us/call (not drained)\n", $3, $2, $4, $5, $8, $6, ($3 ? $7 / hz * 1e6 / $3 : 0)}' "$RESULTS"
        echo "soak RSS series (seconds, MB, transactions open):"
        awk '$1 == "soak_rss" {printf "  %4d %7.1f %8s\n", $2, $3 / 1024, $4}' "$RESULTS"
        # What each open transaction costs at the plateau: the RSS above
        # the router's at rest over the transactions open, last sample.
        awk '$1 == "rss_rest_soak" {rest = $2}
             $1 == "soak_rss" && $4 ~ /^[0-9]+$/ && $4 > 0 {kb = $3; n = $4}
             END {if (n) printf "soak: %.1f KB of RSS above rest per open transaction (last sample, %d open)\n", (kb - rest) / n, n}' "$RESULTS"
        # Growth over the second half of the soak (least squares): flat
        # means within noise.
        awk '$1 == "soak_rss" {t[++n] = $2; k[n] = $3 / 1024}
             END {
                 if (n < 4) exit
                 lo = k[1]; hi = k[1]
                 for (i = 2; i <= n; i++) {if (k[i] < lo) lo = k[i]; if (k[i] > hi) hi = k[i]}
                 h = int(n / 2) + 1; m = 0; sx = sy = sxx = sxy = 0
                 for (i = h; i <= n; i++) {m++; sx += t[i]; sy += k[i]; sxx += t[i] * t[i]; sxy += t[i] * k[i]}
                 slope = (m * sxy - sx * sy) / (m * sxx - sx * sx)
                 printf "soak RSS: first %.1f MB, min %.1f, max %.1f, last %.1f; second half %+.2f MB/min\n", k[1], lo, hi, k[n], slope * 60
             }' "$RESULTS"
        awk '$1 == "soak_rss_after" {printf "RSS after the soak and %d s idle: %.1f MB\n", '"$DRAIN_SECONDS"', $2 / 1024}' "$RESULTS"
    fi
}

if [ "$MODE" = compare ]; then
    say "work directory: $WORK; sosrouter on 127.0.0.1:$(relay_port sosrouter), static $(relay_port static), kamailio on $(relay_port kamailio)," \
        "floor on $(relay_port floor); $PAIRS pairs"
elif is_router; then
    say "work directory: $WORK; router on 127.0.0.1:$ROUTER_PORT; $PAIRS pairs"
else
    say "work directory: $WORK; relay $RELAY on 127.0.0.1:$ROUTER_PORT; $PAIRS pairs"
fi
# The machine may be shared: its load before and after tells how noisy.
echo "loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
case "$MODE" in
    soak | flood)
        soak
        ;;
    cpu)
        cpu_runs
        ;;
    compare)
        compare_runs
        ;;
    instructions)
        instructions
        exit 0
        ;;
    *)
        ramp udp
        cpu_runs
        if [ "$RELAY" != floor ]; then
            ramp tcp
        else
            # The floor forwards UDP datagrams only.
            echo "tcp_skipped $RELAY" >>"$RESULTS"
        fi
        ;;
esac
echo "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
print_summary
