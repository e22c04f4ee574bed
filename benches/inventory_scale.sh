#!/usr/bin/env bash
# The number inventory at carrier scale: how the router starts, restarts,
# takes single changes and a bulk upload with N numbers in its database,
# and what single changes do to calls.
#
#   bash benches/inventory_scale.sh [N] [options]
#
# N: the numbers in the inventory, 1000 to 10000000 (default 1000000;
# 100000, 5000000 and 10000000 are the other sizes it is meant for).
#
# Steps, each bounded in time and count:
#   0. benches/inventory/gen.py writes an inventory of N US numbers (the TSV
#      columns of tests/corpus/emergency-invites/inventory.tsv plus
#      location_id and reg_UNIT; 3,000 tenants of Zipf sizes, three numbers
#      in four with an address of their own, the others sharing a site's)
#      and an upload body of N more numbers for one tenant.
#   1. first start: `sosrouter run --inventory FILE` on an empty
#      database; seconds until /readyz answers 200 (calls routed, by the
#      country defaults while the inventory loads) and until
#      /readyz?inventory=loaded does (routed on the inventory), the
#      router's CPU time by then, peak RSS (VmHWM) and RSS 5 s after ready
#      (VmRSS), the database's size.
#   2. restart on the filled database (same command line: the file is
#      then not read): the same figures.
#   3. calls alone: 911 calls from numbers of the inventory (SIPp: the
#      caller of tests/sipp/uac.xml, an INVITE without location, with the
#      caller's number taken from the inventory, so that the router looks
#      each caller up, finds the PSAP of its registered address and adds
#      that address to the INVITE; under the US rules such a call goes to
#      the screening center first. All trunks are one SIPp trunk running
#      benches/load/uas.xml on UDP) at --call-rate calls/s for
#      --baseline-seconds: call setup (INVITE to 200 at the caller, SIPp's
#      1 ms resolution) median, p99, max, and the routes taken.
#   4. --changes single changes (default 1,000), one after another:
#      PUT /v1/tenants/{t}/numbers/{n}/address with an operator token
#      (benches/inventory/changes.py); the request's median and p99, and
#      how long until GET /v1/inventory shows a snapshot_version past the
#      one before the PUT (the snapshot new calls are routed on). The same
#      calls run meanwhile: their setup median, p99, max and failures.
#      Each PUT times out after --put-timeout s; no PUT starts after
#      --changes-budget s, and the figures are then those of the changes
#      made, said as such.
#   5. a bulk upload of --upload-rows new numbers (default N, at most
#      1,000,000) for one tenant: POST /v1/uploads?tenant=bulk-upload&
#      wait=true, the TSV body streamed; its time, the router's peak RSS,
#      and the same calls meanwhile.
# A summary block ends the run.
#
# Options:
#   --changes K          single changes (default 1000)
#   --call-rate R        calls/s during steps 3 and 4 (default 10)
#   --baseline-seconds S calls alone before the changes (default 20)
#   --put-timeout S      one PUT's limit (default 60)
#   --changes-budget S   no PUT starts after this (default 900)
#   --ready-timeout S    a start's limit (default 300 + N/1000)
#   --upload-timeout S   the bulk upload's limit (default 900)
#   --limit S            the whole run's limit (default 3600 + 3*N/1000)
#   --max-body BYTES     admin.max_body_bytes of the run (default: as in
#                        config/loopback.toml, 8 MiB)
#   --tenants T          tenants in the inventory (default 3000)
#   --upload-rows U      rows of the bulk upload (default N, at most 1,000,000)
#   --backend B          sqlite (default: a file in the work directory) or
#                        postgres (a cluster of .ci/postgres started for the
#                        run, with fsync and synchronous commits on)
#   --located            calls with the load caller's located INVITE (see
#                        step 3) instead of an SDP-only one
#   --keep               keep the work directory (inventory, database, logs)
# Environment: SOSROUTER_BIN to use a given binary instead of building one
# (cargo build --release; CARGO_TARGET_DIR is honoured); TMPDIR for the
# work directory (the inventory, the upload body and the database take
# about 600 bytes per number: 6 GB at N=10,000,000).
#
# The router runs with a configuration derived from config/loopback.toml:
# SIP, admin and metrics listeners on 127.0.0.1 port 0 (the bound
# addresses are read from its "listening ..." log lines), the trunks on
# the SIPp trunk's port, trunk probes off, udp_max_request 65000 (the
# INVITE with its registered address stays on UDP), a SQLite file in the
# work directory (also given as SOSROUTER_DATABASE_URL, so that one set in
# the environment cannot point the run elsewhere), and an operator token
# from `sosrouter token new`.
#
# Every process the script starts is recorded by PID and ended on exit.
# Exit status: 0 when every step ran (a slow or failed step is a result),
# 1 if the router died or did not become ready, 2 on a usage or setup
# error, 3 when the overall limit cut the run short (the summary then
# holds what was measured).

set -euo pipefail

N=1000000
CHANGES=1000
CALL_RATE=10
BASELINE_S=20
PUT_TIMEOUT=60
CHANGES_BUDGET=900
READY_TIMEOUT=
UPLOAD_TIMEOUT=900
LIMIT=
MAX_BODY=
TENANTS=3000
KEEP=0
LOCATED=0
BACKEND=sqlite
UPLOAD_ROWS=
num() { case "$2" in "" | *[!0-9]*) echo "inventory_scale.sh: $1 takes a whole number" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
    case "$1" in
        --changes) num "$1" "${2:-}"; CHANGES="$2"; shift ;;
        --call-rate) num "$1" "${2:-}"; CALL_RATE="$2"; shift ;;
        --baseline-seconds) num "$1" "${2:-}"; BASELINE_S="$2"; shift ;;
        --put-timeout) num "$1" "${2:-}"; PUT_TIMEOUT="$2"; shift ;;
        --changes-budget) num "$1" "${2:-}"; CHANGES_BUDGET="$2"; shift ;;
        --ready-timeout) num "$1" "${2:-}"; READY_TIMEOUT="$2"; shift ;;
        --upload-timeout) num "$1" "${2:-}"; UPLOAD_TIMEOUT="$2"; shift ;;
        --limit) num "$1" "${2:-}"; LIMIT="$2"; shift ;;
        --max-body) num "$1" "${2:-}"; MAX_BODY="$2"; shift ;;
        --tenants) num "$1" "${2:-}"; TENANTS="$2"; shift ;;
        --upload-rows) num "$1" "${2:-}"; UPLOAD_ROWS="$2"; shift ;;
        --backend)
            case "${2:-}" in sqlite | postgres) BACKEND="$2" ;; *) echo "inventory_scale.sh: --backend is sqlite or postgres" >&2; exit 2 ;; esac
            shift ;;
        --keep) KEEP=1 ;;
        --located) LOCATED=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        [0-9]*) num N "$1"; N="$1" ;;
        *) echo "inventory_scale.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$N" -lt 1000 ] || [ "$N" -gt 10000000 ]; then
    echo "inventory_scale.sh: N is 1000 to 10000000" >&2
    exit 2
fi
[ "$CALL_RATE" -ge 1 ] || { echo "inventory_scale.sh: --call-rate is at least 1" >&2; exit 2; }
[ "$TENANTS" -ge 1 ] || { echo "inventory_scale.sh: --tenants is at least 1" >&2; exit 2; }
READY_TIMEOUT="${READY_TIMEOUT:-$((300 + N / 1000))}"
UPLOAD_ROWS="${UPLOAD_ROWS:-$((N < 1000000 ? N : 1000000))}"
LIMIT="${LIMIT:-$((3600 + 3 * N / 1000))}"
DEADLINE=$((SECONDS + LIMIT))
# The first start at N=1,000,000 peaked at 3.1 GB (docs/performance.md):
# about 3.2 KB per number. Said, not enforced: the figure is what is measured.
need_kb=$((N * 32 / 10))
avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
if [ "$need_kb" -gt "${avail_kb:-0}" ]; then
    echo "inventory_scale.sh: WARNING: the first start may need about $((need_kb / 1048576)) GB" \
        "(3.2 KB per number at N=1,000,000), more than the $((avail_kb / 1048576)) GB available now;" \
        "the router may be killed for memory (the run then stops, exit status 1)" >&2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for tool in sipp curl python3 ss awk timeout; do
    command -v "$tool" >/dev/null || { echo "inventory_scale.sh: $tool is needed (SIPp: Debian package sip-tester)" >&2; exit 2; }
done
[ -r /proc/self/status ] || { echo "inventory_scale.sh: needs Linux /proc" >&2; exit 2; }
HZ="$(getconf CLK_TCK)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sosrouter-inventory.XXXXXX")"
STARTED=()     # every PID this script started
ROUTER_PID=""
RESULTS="$WORK/results.txt"
: >"$RESULTS"

say() { printf '%s\n' "$*" >&2; }
# forget PID: a process waited for (reaped) leaves the list, so that its
# PID, free for reuse, is never signalled again.
forget() {
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}
# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        if alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
    done
    for pid in "${STARTED[@]}"; do
        # Bounded: anything still up after 10 s is ended for good.
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# Seconds left of the overall limit; cap S: S, or what is left if less.
left() { echo $((DEADLINE - SECONDS)); }
cap() {
    local l
    l="$(left)"
    if [ "$l" -lt "$1" ]; then echo $((l > 1 ? l : 1)); else echo "$1"; fi
}
# over STEP: stops the run, with what was measured, once the limit is spent.
over() {
    if [ "$(left)" -le 0 ]; then
        say "inventory_scale.sh: the overall limit of ${LIMIT} s (--limit) was reached during $1; stopping"
        echo "limit_reached $1" >>"$RESULTS"
        print_summary
        exit 3
    fi
}
kb() { awk -v k="^$2:" '$0 ~ k {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$HZ" '{printf "%.1f", ($12 + $13) / hz}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
put_result() { echo "$*" >>"$RESULTS"; }
result() { awk -v k="$1" '$1 == k {sub(/^[^ ]+ /, ""); v = $0} END {print v}' "$RESULTS"; }

# ---------------------------------------------------------------- binary

if [ -n "${SOSROUTER_BIN:-}" ]; then
    SRC="$SOSROUTER_BIN"
else
    say "building the router (cargo build --release --bin sosrouter)"
    (cd "$ROOT" && cargo build --release --bin sosrouter --quiet)
    SRC="${CARGO_TARGET_DIR:-$ROOT/target}/release/sosrouter"
fi
[ -x "$SRC" ] || { echo "inventory_scale.sh: no sosrouter binary at $SRC" >&2; exit 2; }
# A private copy: a build elsewhere cannot swap it mid-run.
cp "$SRC" "$WORK/sosrouter"
BIN="$WORK/sosrouter"

# ---------------------------------------------------------------- ports

port_busy() { ss -Hlnu 2>/dev/null | awk '{print $4}' | grep -q "[:.]$1\$"; }
pick_port() {
    local p tries=0
    while [ $tries -lt 100 ]; do
        p=$((20000 + RANDOM % 12000))
        if ! port_busy "$p" && ! port_busy $((p + 1)); then echo "$p"; return 0; fi
        tries=$((tries + 1))
    done
    return 1
}
# The SIPp trunk on UAS_PORT, the SIPp caller on UAS_PORT+1.
UAS_PORT="$(pick_port)" || { echo "inventory_scale.sh: no free UDP port found" >&2; exit 2; }
UAC_PORT=$((UAS_PORT + 1))

# ---------------------------------------------------------------- inputs

INV="$WORK/inventory.tsv"
SAMPLE="$WORK/sample.tsv"
BULK="$WORK/bulk-upload.tsv"
SAMPLE_COUNT=$((CHANGES + 2000))
say "work directory: $WORK; N=$N; SIPp trunk on UDP 127.0.0.1:$UAS_PORT"
put_result "loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
t0="$(now)"
say "generating the inventory of $N numbers"
timeout --kill-after=10 "$(cap $((600 + N / 2000)))" \
    python3 "$ROOT/benches/inventory/gen.py" "$N" "$INV" --tenants "$TENANTS" \
    --sample "$SAMPLE" --sample-count "$SAMPLE_COUNT" ||
    { over "the generation of the inventory"; echo "inventory_scale.sh: gen.py failed" >&2; exit 2; }
put_result "gen_s $(since "$t0")"
put_result "inventory_bytes $(stat -c %s "$INV")"
put_result "inventory_rows $(($(wc -l <"$INV") - 1))"
put_result "numbers $(awk -F'\t' 'NR > 1 && $1 != "" {n++} END {print n + 0}' "$INV")"
put_result "tenants $(awk -F'\t' 'NR > 1 {t[$2]} END {print length(t)}' "$INV")"
put_result "own_address $(awk -F'\t' 'NR > 1 && $1 != "" && $7 != "" {n++} END {print n + 0}' "$INV")"
put_result "via_location $(awk -F'\t' 'NR > 1 && $1 != "" && $6 != "" {n++} END {print n + 0}' "$INV")"
put_result "distinct_addresses $(awk -F'\t' 'NR > 1 && $7 != "" {a[$8 FS $9 FS $10 FS $11 FS $12 FS $13 FS $14]} END {print length(a)}' "$INV")"
say "generating the upload body of $UPLOAD_ROWS numbers"
timeout --kill-after=10 "$(cap $((600 + UPLOAD_ROWS / 2000)))" \
    python3 "$ROOT/benches/inventory/gen.py" "$UPLOAD_ROWS" "$BULK" --single-tenant bulk-upload --block 1 ||
    { over "the generation of the upload body"; echo "inventory_scale.sh: gen.py failed" >&2; exit 2; }
over "the generation of the inputs"

# Numbers the calls come from: sampled ones the changes leave alone.
CALLERS="$WORK/callers.csv"
{ echo SEQUENTIAL; awk -F'\t' -v skip="$CHANGES" 'NR > 1 + skip {print $2 ";"}' "$SAMPLE"; } >"$CALLERS"
[ "$(wc -l <"$CALLERS")" -gt 100 ] || { echo "inventory_scale.sh: too few sampled callers" >&2; exit 2; }
# The caller: by default tests/sipp/uac.xml (an SDP-only INVITE, as
# benches/load.sh --uac takes it): the router finds the caller's
# registered address in the inventory and adds it to the call; with
# --located the load caller's emergency INVITE (benches/load/
# uac_emergency.xml, 1.5 KB with a PIDF-LO whose method is not trusted).
# The caller's number comes from the inventory either way.
UAC_XML="$WORK/uac_inventory.xml"
if [ "$LOCATED" = 1 ]; then
    sed 's/+12125550142/[field0]/g' "$ROOT/benches/load/uac_emergency.xml" >"$UAC_XML"
    UAC_DESC="benches/load/uac_emergency.xml, 1.5 KB INVITE with an untrusted PIDF-LO"
else
    sed 's/\[caller\]/[field0]/g' "$ROOT/tests/sipp/uac.xml" >"$UAC_XML"
    UAC_DESC="tests/sipp/uac.xml, SDP-only INVITE, no location"
fi
grep -q '\[field0\]' "$UAC_XML" || { echo "inventory_scale.sh: the caller scenario no longer names its caller as expected" >&2; exit 2; }
UAS_XML="$ROOT/benches/load/uas.xml"

# ---------------------------------------------------------------- config

TOKEN_FILE="$WORK/operator.token"
"$BIN" token new --role operator --name inventory-bench >"$TOKEN_FILE"
TOKEN="$(head -n 1 "$TOKEN_FILE")"
DB="$WORK/db/inventory.db"
DB_URL="sqlite://$DB"
if [ "$BACKEND" = postgres ]; then
    command -v psql >/dev/null || { echo "inventory_scale.sh: psql is needed (Debian package postgresql-client)" >&2; exit 2; }
    # A cluster of its own, durable as a deployment's; stopped on exit.
    # shellcheck source=/dev/null
    SOSROUTER_PG_FSYNC=on source "$ROOT/.ci/postgres" >&2 || { echo "inventory_scale.sh: cannot start PostgreSQL" >&2; exit 2; }
    DB_URL="$SOSROUTER_TEST_PG_URL"
    # The cluster stops after the router (sourcing set its own trap).
    # shellcheck disable=SC2064
    trap "cleanup; $_SOSROUTER_PG_STOP" EXIT
fi
db_bytes() {
    if [ "$BACKEND" = postgres ]; then
        psql -qtA "$DB_URL" -c 'SELECT pg_database_size(current_database())' 2>/dev/null || echo 0
    else
        du -cb "$DB"* 2>/dev/null | awk 'END {print $1}'
    fi
}
CFG="$WORK/router.toml"
# config/loopback.toml with its listeners on port 0, its trunks on the
# SIPp trunk, the database in the work directory; each rewrite is counted,
# so that a change of that file's shape stops the run instead of silently
# measuring something else.
awk -v uas="$UAS_PORT" -v db="$DB_URL" -v data="$WORK/db" -v maxbody="$MAX_BODY" '
    /^\[/ { sec = $0 }
    sec == "[sip]" && /^listen = / { print "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]"; n["sip_listen"]++; next }
    sec == "[sip]" && /^advertise = / { n["advertise"]++; next }
    sec == "[[trunk]]" && /^uri = "sip:127\.0\.0\.1:[0-9]+"$/ { print "uri = \"sip:127.0.0.1:" uas "\""; n["trunk_uri"]++; next }
    sec == "[admin]" && /^listen = / { print "listen = \"127.0.0.1:0\""; n["admin_listen"]++; next }
    sec == "[admin]" && /^max_body_bytes = / { if (maxbody != "") $0 = "max_body_bytes = " maxbody; print; n["max_body"]++; next }
    sec == "[metrics]" && /^listen = / { print "listen = \"127.0.0.1:0\""; n["metrics_listen"]++; next }
    sec == "[database]" && /^data_dir = / { print "url = \"" db "\""; print "data_dir = \"" data "\""; n["data_dir"]++; next }
    { print }
    $0 == "[sip]" { print "udp_max_request = 65000" }
    END {
        split("sip_listen advertise admin_listen max_body metrics_listen data_dir", k, " ")
        for (i in k) if (n[k[i]] != 1) { printf "config/loopback.toml: expected one %s line, found %d\n", k[i], n[k[i]] > "/dev/stderr"; bad = 1 }
        if (n["trunk_uri"] < 1) { print "config/loopback.toml: no trunk uri on 127.0.0.1" > "/dev/stderr"; bad = 1 }
        exit bad
    }' "$ROOT/config/loopback.toml" >"$CFG" || { echo "inventory_scale.sh: cannot derive the configuration" >&2; exit 2; }
cat >>"$CFG" <<EOF

# Added by benches/inventory_scale.sh: no OPTIONS probes (the SIPp trunk
# would take them for calls; every trunk counts as up), info logs (the
# bound addresses are read from them).
[health]
interval_s = 0

[log]
level = "info"

EOF
tail -n +3 "$TOKEN_FILE" >>"$CFG"
LIMIT_BODY="$(awk -F' = ' '$1 == "max_body_bytes" {print $2}' "$CFG")"
"$BIN" check-config "$CFG" >/dev/null || { echo "inventory_scale.sh: the derived configuration does not load ($CFG)" >&2; KEEP=1; exit 2; }

# ---------------------------------------------------------------- router

# start_router TAG: starts the router (with --inventory), waits for
# /readyz; records TAG_ready_s, TAG_cpu_s, TAG_hwm_kb, TAG_rss_kb.
start_router() {
    local tag="$1" t0 n=$SECONDS code limit routing=""
    ROUTER_LOG="$WORK/router-$tag.log"
    t0="$(now)"
    env -u RUST_LOG SOSROUTER_DATABASE_URL="$DB_URL" \
        "$BIN" run --config "$CFG" --inventory "$INV" >"$ROUTER_LOG" 2>&1 &
    ROUTER_PID=$!
    STARTED+=("$ROUTER_PID")
    limit="$(cap "$READY_TIMEOUT")"
    ADMIN=""
    while :; do
        if ! alive "$ROUTER_PID"; then
            say "the router exited during its start ($tag); its log ends with:"
            tail -n 20 "$ROUTER_LOG" >&2
            put_result "router_died start_$tag"
            print_summary
            exit 1
        fi
        if [ -z "$ADMIN" ]; then
            ADMIN="$(awk '/listening admin http / {print $NF; exit}' "$ROUTER_LOG")"
            SIP="$(awk '/listening sip udp / {print $NF; exit}' "$ROUTER_LOG")"
            METRICS="$(awk '/listening metrics http / {print $NF; exit}' "$ROUTER_LOG")"
            [ -n "$ADMIN" ] && put_result "${tag}_listening_s $(since "$t0")"
        fi
        if [ -n "$ADMIN" ]; then
            # Routing (by the country defaults while the inventory loads)
            # once /readyz answers 200; ready once the inventory is loaded.
            if [ -z "$routing" ]; then
                code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADMIN/readyz" || true)"
                [ "$code" = 200 ] && { routing=1; put_result "${tag}_routing_s $(since "$t0")"; }
            fi
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADMIN/readyz?inventory=loaded" || true)"
            [ "$code" = 200 ] && break
        fi
        if [ $((SECONDS - n)) -ge 30 ]; then
            n=$SECONDS
            say "  $tag: $(since "$t0") s, not ready yet (RSS $(mb "$(kb "$ROUTER_PID" VmRSS)") MB)"
        fi
        if awk -v s="$(since "$t0")" -v l="$limit" 'BEGIN {exit !(s > l)}'; then
            say "inventory_scale.sh: the router was not ready within $limit s of its $tag start" \
                "(--ready-timeout $READY_TIMEOUT, --limit $LIMIT); its log ends with:"
            tail -n 10 "$ROUTER_LOG" >&2
            put_result "not_ready $tag $limit"
            print_summary
            exit 1
        fi
        sleep 0.1
    done
    put_result "${tag}_ready_s $(since "$t0")"
    put_result "${tag}_cpu_s $(cpu_s "$ROUTER_PID")"
    put_result "${tag}_hwm_kb $(kb "$ROUTER_PID" VmHWM)"
    sleep 5
    put_result "${tag}_rss_kb $(kb "$ROUTER_PID" VmRSS)"
    put_result "${tag}_db_bytes $(db_bytes)"
    say "  $tag: ready after $(result "${tag}_ready_s") s; SIP $SIP, admin $ADMIN, metrics $METRICS"
}

# stop_router: SIGTERM, up to 60 s to drain and write its records, then
# SIGKILL (said in the results).
stop_router() {
    local t0
    t0="$(now)"
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    for _ in $(seq 1 600); do alive "$ROUTER_PID" || break; sleep 0.1; done
    if alive "$ROUTER_PID"; then
        say "the router did not stop within 60 s of SIGTERM; ending it"
        put_result "stop_killed 1"
        kill -KILL "$ROUTER_PID" 2>/dev/null || true
    fi
    wait "$ROUTER_PID" 2>/dev/null || true
    forget "$ROUTER_PID"
    put_result "stop_s_$1 $(since "$t0")"
    ROUTER_PID=""
}

check_router() {
    if [ -n "$ROUTER_PID" ] && ! alive "$ROUTER_PID"; then
        say "THE ROUTER DIED (pid $ROUTER_PID) during $1; its log ends with:"
        tail -n 20 "$ROUTER_LOG" >&2
        put_result "router_died $1"
        print_summary
        exit 1
    fi
}

# ---------------------------------------------------------------- SIPp

# start_trunk: the SIPp trunk, answering every INVITE, for SECONDS at most.
start_trunk() {
    mkdir -p "$WORK/sipp"
    (cd "$WORK/sipp" && exec sipp -sf "$UAS_XML" -i 127.0.0.1 -p "$UAS_PORT" -t u1 \
        -timeout "$1s" -nostdin -buff_size 4194304 \
        -trace_err -error_file "$WORK/sipp/uas.err" >"$WORK/sipp/uas.out" 2>&1) &
    UAS_PID=$!
    STARTED+=("$UAS_PID")
    sleep 0.5
}

# start_caller TAG CALLS SECONDS: calls from the inventory's numbers to
# 911 at CALL_RATE, each call's setup time written (-trace_rtt).
start_caller() {
    local tag="$1" calls="$2" secs="$3" dir="$WORK/sipp/$1"
    mkdir -p "$dir"
    (cd "$dir" && exec sipp "$SIP" -sf "$UAC_XML" -s 911 -inf "$CALLERS" \
        -i 127.0.0.1 -p "$UAC_PORT" -t u1 -r "$CALL_RATE" -m "$calls" -d 50 \
        -recv_timeout 10000 -timeout "${secs}s" -nostdin -buff_size 4194304 \
        -trace_rtt -rtt_freq 1 -trace_stat -stf "$dir/stat.csv" -fd 1 \
        -trace_err -error_file "$dir/err.log" >"$dir/out.txt" 2>&1) &
    UAC_PID=$!
    STARTED+=("$UAC_PID")
    CALLER_T0="$(now)"
}

# wait_caller SECONDS: waits for the caller, then ends it by its PID.
wait_caller() {
    local n=0
    while alive "$UAC_PID" && [ $n -lt $(($1 * 10)) ]; do sleep 0.1; n=$((n + 1)); done
    if alive "$UAC_PID"; then kill "$UAC_PID" 2>/dev/null || true; fi
    wait "$UAC_PID" 2>/dev/null || true
    forget "$UAC_PID"
}

# The calls the SIPp trunk gave up because an INVITE came again while it
# waited for the ACK: the router retransmits an INVITE whose 200 it has
# not read within T1, as after a stall, and benches/load/uas.xml takes the
# retransmission for an unexpected message. Such a call fails at the
# caller; it is the trunk scenario's failure, caused by the stall.
trunk_aborts() {
    local n
    # SIPp writes its events without line breaks between them: count
    # matches, not lines.
    n="$(grep -o "while expecting 'ACK' (index 3), received 'INVITE" "$WORK/sipp/uas.err" 2>/dev/null | wc -l)"
    echo "${n:-0}"
}

# call_timeouts TAG: "INVITE BYE", the calls the caller gave up for lack
# of any answer to its INVITE, or of the 200 to its BYE, within 10 s
# (-recv_timeout; the message indexes of both caller scenarios).
call_timeouts() {
    local f="$WORK/sipp/$1/err.log"
    printf '%s %s' \
        "$(grep -Eo 'receive timeout on message [^ ]+ caller:[1-4] ' "$f" 2>/dev/null | wc -l)" \
        "$(grep -Eo 'receive timeout on message [^ ]+ caller:8 ' "$f" 2>/dev/null | wc -l)"
}

# calls_summary TAG: "ok failed retransmissions" from the caller's last
# statistics line, and setup times (ms) "count median p99 max".
calls_summary() {
    local dir="$WORK/sipp/$1"
    awk -F';' 'NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; next} {l = $0}
        END {split(l, v, ";"); printf "%d %d %d", v[c["SuccessfulCall(C)"]], v[c["FailedCall(C)"]], v[c["Retransmissions(C)"]]}' \
        "$dir/stat.csv" 2>/dev/null || printf '0 0 0'
    printf ' '
    cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' '$1 ~ /^[0-9.]+$/ {print $2}' | sort -n |
        awk '{v[++n] = $1} END {
            if (!n) {print "0 - - -"; exit}
            p = int(0.99 * n); if (p < 0.99 * n) p++
            printf "%d %s %s %s\n", n, (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), v[p], v[n]
        }'
}

# ---------------------------------------------------------------- report

print_summary() {
    local cpu_model
    cpu_model="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo
    echo "sosrouter inventory at carrier scale, N=$N, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $cpu_model, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r);" \
        "load average at start $(result loadavg_start), at end $(result loadavg_end)"
    echo "router: $("$BIN" --version 2>/dev/null | head -n 1), $([ "$BACKEND" = postgres ] && echo "PostgreSQL $(psql -qtA "$DB_URL" -c 'SHOW server_version' 2>/dev/null) on loopback (fsync on)" || echo "SQLite in $WORK"), log level info"
    awk -v N="$N" -v rate="$CALL_RATE" -v uac="${UAC_DESC:-}" '
        function v(k) { return (k in r && r[k] != "") ? r[k] : "-" }
        function mb(k) { return (k in r) ? sprintf("%.1f MB", r[k] / 1024) : "-" }
        function calls(k, what,   c) {
            if (!(k in r)) return
            split(r[k], c, " ")
            printf "   %s: %d ok, %d failed, %d retransmissions by the caller; setup (INVITE to 200 at the caller) median %s ms, p99 %s ms, max %s ms over %d calls\n",
                what, c[1], c[2], c[3], c[5], c[6], c[7], c[4]
            if (c[2] > 0)
                printf "     failed: %d with no answer to the INVITE within 10 s, %d with no 200 to the BYE within 10 s; %d dropped by the SIPp trunk on an INVITE the router retransmitted after a stall\n", c[9], c[10], c[8]
        }
        function upload(k, rows, bytes,   u) {
            split(r[k], u, " ")
            printf "HTTP %s in %s s, peak RSS %s, RSS after %s; answer %s\n", u[1], u[2], mb(k "_hwm_kb"), mb(k "_rss_kb"),
                substr(r[k], length(u[1]) + length(u[2]) + 3)
        }
        { k = $1; sub(/^[^ ]+ ?/, ""); r[k] = $0 }
        END {
            printf "inventory: %s numbers (%s rows with the location rows), %s tenants; %s numbers with an address on their row, %s taking it from a tenant location; %s distinct addresses; %.1f MB of TSV, written in %s s\n",
                v("numbers"), v("inventory_rows"), v("tenants"), v("own_address"), v("via_location"), v("distinct_addresses"), v("inventory_bytes") / 1048576, v("gen_s")
            if ("first_ready_s" in r)
                printf "1. first start, --inventory into an empty database: routing calls after %s s (by the country defaults until the inventory is in), inventory loaded (ready) after %s s, router CPU %s s, peak RSS %s, RSS 5 s after ready %s; database %.1f MB; stop took %s s\n",
                    v("first_routing_s"), v("first_ready_s"), v("first_cpu_s"), mb("first_hwm_kb"), mb("first_rss_kb"), v("first_db_bytes") / 1048576, v("stop_s_first")
            if ("restart_ready_s" in r)
                printf "2. restart on the filled database: routing calls after %s s, inventory loaded (ready) after %s s (%s), router CPU %s s, peak RSS %s, RSS 5 s after ready %s (%.0f bytes per number)\n",
                    v("restart_routing_s"), v("restart_ready_s"), v("restart_source"), v("restart_cpu_s"), mb("restart_hwm_kb"), mb("restart_rss_kb"), r["restart_rss_kb"] * 1024 / N
            if ("cold_ready_s" in r)
                printf "2b. restart without its checkpoint (a new instance on the filled database): routing calls after %s s, inventory loaded (ready) after %s s, router CPU %s s, peak RSS %s, RSS 5 s after ready %s (%.0f bytes per number)\n",
                    v("cold_routing_s"), v("cold_ready_s"), v("cold_cpu_s"), mb("cold_hwm_kb"), mb("cold_rss_kb"), r["cold_rss_kb"] * 1024 / N
            if ("changes_done" in r) {
                stopped = r["changes_stopped"]; gsub(/_/, " ", stopped)
                printf "3. single changes, one after another: %s of %s made (%s ok, %s failed, %s timed out) in %s s%s\n",
                    v("changes_done"), v("changes_asked"), v("changes_ok"), v("changes_failed"), v("changes_timeouts"), v("changes_wall_s"),
                    (stopped != "" ? "; STOPPED: " stopped : "")
                printf "   PUT .../address: median %s ms, p99 %s ms, max %s ms\n", v("changes_put_median_ms"), v("changes_put_p99_ms"), v("changes_put_max_ms")
                printf "   visible (GET /v1/inventory snapshot_version moved on), from the PUT start: median %s ms, p99 %s ms, max %s ms; %s not visible in time; last change read back: %s\n",
                    v("changes_visible_median_ms"), v("changes_visible_p99_ms"), v("changes_visible_max_ms"), v("changes_not_visible"), v("changes_verified")
                printf "   router RSS during the changes: max %s (sampled each second), peak %s, after %s; snapshots loaded: %s\n",
                    mb("changes_rss_max_kb"), mb("changes_hwm_kb"), mb("changes_rss_after_kb"), v("snapshot_loads")
            }
            if ("upload_all" in r) {
                printf "4. bulk upload of %s rows (%.1f MB TSV, streamed, POST /v1/uploads?wait=true): ", v("upload_rows"), r["bulk_bytes"] / 1048576
                upload("upload_all")
                printf "   router RSS during the upload: max %s (sampled each second)\n", mb("upload_rss_max_kb")
                printf "   inventory after the upload: %s\n", v("inventory_after_upload")
            }
            if ("calls_baseline" in r || "calls_changes" in r) {
                printf "5. 911 calls from inventory numbers at %s calls/s over UDP (SIPp caller %s; trunk on UDP); routes: %s\n", rate, uac, v("routes")
                calls("calls_baseline", "alone, before the changes")
                calls("calls_changes", "during the changes")
                calls("calls_upload", "during the bulk upload")
            }
            if ("changes_rc" in r) printf "NOTE: changes.py ended with status %s\n", r["changes_rc"]
            if ("stop_killed" in r) print "NOTE: the router did not stop within 60 s of SIGTERM and was killed"
            if ("limit_reached" in r) printf "NOTE: the overall limit (--limit) cut the run short during %s\n", r["limit_reached"]
            if ("not_ready" in r) printf "NOTE: the router was not ready in time (%s)\n", r["not_ready"]
            if ("router_died" in r) printf "NOTE: the router died during %s\n", r["router_died"]
        }' "$RESULTS"
}

# ---------------------------------------------------------------- steps

say "step 1: first start with --inventory into an empty database"
start_router first
over "the first start"
grep -q 'inventory file imported into the empty database' "$ROUTER_LOG" ||
    say "NOTE: the first start's log does not say the file was imported"
stop_router first
over "the first stop"

say "step 2: restarts with the database filled: without the router's checkpoint, then with it"
rm -f "$WORK/db/inventory.checkpoint"
start_router cold
grep -q 'the database holds an inventory already' "$ROUTER_LOG" ||
    say "NOTE: the restart's log does not say the database held the inventory"
# Its checkpoint written (it is, right after the load), it stops.
for _ in $(seq 1 600); do [ -s "$WORK/db/inventory.checkpoint" ] && break; sleep 0.1; done
stop_router cold
over "the restart without a checkpoint"
start_router restart
if grep -q 'inventory snapshot read from its checkpoint' "$ROUTER_LOG"; then
    put_result "restart_source its checkpoint and the change log"
else
    put_result "restart_source the whole database"
fi
over "the restart"

CALL_SECS=$((BASELINE_S + CHANGES_BUDGET + 2 * PUT_TIMEOUT + 120))
start_trunk "$(cap $((CALL_SECS + 60)))"

say "step 3: calls alone, ${BASELINE_S} s at $CALL_RATE calls/s"
start_caller baseline $((BASELINE_S * CALL_RATE)) "$(cap $((BASELINE_S + 40)))"
wait_caller "$(cap $((BASELINE_S + 45)))"
check_router "the calls alone"
put_result "calls_baseline $(calls_summary baseline) $(trunk_aborts) $(call_timeouts baseline)"
aborts_before="$(trunk_aborts)"
over "the calls alone"

say "step 4: $CHANGES single address changes, calls at $CALL_RATE calls/s meanwhile"
start_caller changes $(((CHANGES_BUDGET + 2 * PUT_TIMEOUT + 60) * CALL_RATE)) \
    "$(cap $((CHANGES_BUDGET + 2 * PUT_TIMEOUT + 90)))"
sleep 1
rss_max=0
t0="$(now)"
budget="$(cap "$CHANGES_BUDGET")"
timeout --kill-after=10 "$(cap $((budget + 2 * PUT_TIMEOUT + 30)))" \
    python3 "$ROOT/benches/inventory/changes.py" --api "$ADMIN" --token-file "$TOKEN_FILE" \
    --sample "$SAMPLE" --count "$CHANGES" --timeout "$PUT_TIMEOUT" --budget "$budget" \
    --out "$WORK/changes.tsv" >"$WORK/changes.out" 2>"$WORK/changes.err" &
CH_PID=$!
STARTED+=("$CH_PID")
while alive "$CH_PID"; do
    check_router "the changes"
    r="$(kb "$ROUTER_PID" VmRSS)"
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 1
done
ch_rc=0
wait "$CH_PID" || ch_rc=$?
forget "$CH_PID"
put_result "changes_step_s $(since "$t0")"
[ "$ch_rc" = 0 ] || { say "changes.py ended with status $ch_rc$([ "$ch_rc" = 124 ] && echo " (its time limit)")"; put_result "changes_rc $ch_rc"; }
grep -v '^changes.py: [0-9]* changes' "$WORK/changes.err" | head -n 5 >&2 || true
while IFS='=' read -r k v; do put_result "changes_$k $v"; done <"$WORK/changes.out"
# Calls go on 2 s past the last change, then end gracefully (SIGUSR1:
# no new call, the calls under way finish).
sleep 2
if alive "$UAC_PID"; then kill -USR1 "$UAC_PID" 2>/dev/null || true; fi
wait_caller 20
check_router "the changes"
put_result "calls_changes $(calls_summary changes) $(($(trunk_aborts) - aborts_before)) $(call_timeouts changes)"
put_result "changes_rss_max_kb $rss_max"
put_result "changes_hwm_kb $(kb "$ROUTER_PID" VmHWM)"
put_result "changes_rss_after_kb $(kb "$ROUTER_PID" VmRSS)"
put_result "routes $(grep -o 'forwarding call_id=[^ ]* trunk=[^ ]*' "$ROUTER_LOG" | awk '{sub("trunk=", "", $3); n[$3]++} END {for (t in n) printf "%s%s %d", (s++ ? ", " : ""), t, n[t]}')"
put_result "snapshot_loads $(grep -c 'inventory snapshot loaded from the database' "$ROUTER_LOG" || true)"
over "the changes"

say "step 5: a bulk upload of $UPLOAD_ROWS rows, calls at $CALL_RATE calls/s meanwhile"
BULK_BYTES="$(stat -c %s "$BULK")"
put_result "bulk_bytes $BULK_BYTES"
put_result "upload_rows $UPLOAD_ROWS"
start_caller upload $(((UPLOAD_TIMEOUT + 60) * CALL_RATE)) "$(cap $((UPLOAD_TIMEOUT + 90)))"
sleep 2
out="$WORK/upload.json"
(curl -s -o "$out" -w '%{http_code} %{time_total}\n' --max-time "$(cap "$UPLOAD_TIMEOUT")" -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: text/tab-separated-values' \
    -T "$BULK" "http://$ADMIN/v1/uploads?tenant=bulk-upload&wait=true" >"$WORK/upload.code" || echo "000 -" >"$WORK/upload.code") &
UP_PID=$!
STARTED+=("$UP_PID")
rss_max=0
while alive "$UP_PID"; do
    check_router "the bulk upload"
    r="$(kb "$ROUTER_PID" VmRSS)"
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 1
done
wait "$UP_PID" 2>/dev/null || true
forget "$UP_PID"
read -r code t <"$WORK/upload.code" || true
put_result "upload_all ${code:-000} ${t:--} $(head -c 400 "$out" 2>/dev/null | tr -d '\n' || true)"
put_result "upload_all_hwm_kb $(kb "$ROUTER_PID" VmHWM)"
put_result "upload_all_rss_kb $(kb "$ROUTER_PID" VmRSS)"
put_result "upload_rss_max_kb $rss_max"
sleep 2
if alive "$UAC_PID"; then kill -USR1 "$UAC_PID" 2>/dev/null || true; fi
wait_caller 20
check_router "the bulk upload"
put_result "calls_upload $(calls_summary upload) 0 $(call_timeouts upload)"
if alive "$UAS_PID"; then kill "$UAS_PID" 2>/dev/null || true; fi
wait "$UAS_PID" 2>/dev/null || true
forget "$UAS_PID"
put_result "inventory_after_upload $(curl -s --max-time 30 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/v1/inventory" || true)"
stop_router last
put_result "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"

print_summary
