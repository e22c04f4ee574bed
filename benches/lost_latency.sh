#!/usr/bin/env bash
# LoST query latency against the router's own LoST server, on loopback.
#
#   bash benches/lost_latency.sh [QUERIES]
#
# Starts the router with `[emergency.lost] serve = true` on the admin
# listener (a free port), then asks it QUERIES findService queries
# (default 2,000, at most 100,000) over one keep-alive HTTP connection,
# one at a time, each for another point of the continental US (the
# server answers each from its service areas; none is answered from a
# cache). Prints the latency of the first query (the server works out an
# area's boundary the first time) and the median, 90th and 99th
# percentiles and maximum of the rest, client-side wall time from the
# request's first byte to the answer's last.
#
# Environment: SOSROUTER_BIN for a given binary (else cargo build
# --release). Needs python3. Every process it starts is ended on exit, by
# PID. Exit 0 with the figures; 1 when a query is not answered 200; 2 on a
# usage or setup error.
set -euo pipefail
cd "$(dirname "$0")/.."

QUERIES=${1:-2000}
case "$QUERIES" in
    '' | *[!0-9]*) echo "usage: bash benches/lost_latency.sh [QUERIES]" >&2; exit 2 ;;
esac
[ "$QUERIES" -ge 10 ] && [ "$QUERIES" -le 100000 ] || { echo "QUERIES: 10 to 100000" >&2; exit 2; }
command -v python3 >/dev/null || { echo "lost_latency.sh: needs python3" >&2; exit 2; }

WORK=$(mktemp -d /tmp/sosrouter-lost.XXXXXX)
ROUTER_PID=
cleanup() {
    if [ -n "$ROUTER_PID" ]; then
        kill "$ROUTER_PID" 2>/dev/null || true
        wait "$ROUTER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${SOSROUTER_BIN:-}" ]; then
    BIN=$SOSROUTER_BIN
else
    cargo build --release --locked --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release/sosrouter"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
SIP=$(free_port)
ADMIN=$(free_port)
# Trunks on ports nothing listens on: no call is placed.
cat >"$WORK/router.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$SIP"]
allow = ["127.0.0.1/32"]

[health]
interval_s = 0

[[trunk]]
name = "carrier"
kind = "inbound"
sources = ["127.0.0.1/32"]
country = "US"

[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:9"

[[trunk]]
name = "screening"
kind = "screening"
uri = "sip:127.0.0.1:9"

[[trunk]]
name = "test"
kind = "test"
uri = "sip:127.0.0.1:9"

[[trunk]]
name = "last-resort"
kind = "last-resort"
uri = "sip:127.0.0.1:9"

[[route]]
numbers = ["911"]
targets = ["psap", "screening", "last-resort"]

[emergency]
domain = "sosrouter.lab.example"

[emergency.lost]
serve = true
source = "lost.lab.example"

[admin]
listen = "127.0.0.1:$ADMIN"

[log]
level = "warn"
EOF

"$BIN" run --config "$WORK/router.toml" >"$WORK/router.log" 2>&1 &
ROUTER_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$ADMIN/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$ROUTER_PID" 2>/dev/null || { echo "the router stopped:" >&2; cat "$WORK/router.log" >&2; exit 2; }
    sleep 0.1
done

python3 - "$ADMIN" "$QUERIES" <<'PY'
import http.client, statistics, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
BODY = """<?xml version="1.0" encoding="UTF-8"?>
<findService xmlns="urn:ietf:params:xml:ns:lost1" xmlns:gml="http://www.opengis.net/gml"
     serviceBoundary="value" recursive="true">
  <location id="q{i}" profile="geodetic-2d">
    <gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{lat:.4f} {lon:.4f}</gml:pos></gml:Point>
  </location>
  <service>urn:service:sos</service>
</findService>
"""
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
times = []
for i in range(n):
    # A grid over the continental US: another point, mostly another area.
    lat = 30.0 + (i * 7 % 150) / 10.0
    lon = -120.0 + (i * 13 % 450) / 10.0
    body = BODY.format(i=i, lat=lat, lon=lon).encode()
    t0 = time.perf_counter()
    conn.request("POST", "/lost", body, {"Content-Type": "application/lost+xml"})
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter() - t0
    if r.status != 200 or b"findServiceResponse" not in data and b"<errors" not in data:
        print(f"query {i}: HTTP {r.status}: {data[:200]!r}", file=sys.stderr)
        sys.exit(1)
    times.append(dt * 1e6)
first, rest = times[0], sorted(times[1:])
q = lambda p: rest[min(len(rest) - 1, int(p * len(rest)))]
print(f"LoST findService against the router's own server, {n} queries over one keep-alive connection:")
print(f"  first query {first:.0f} us; then median {statistics.median(rest):.0f} us, "
      f"p90 {q(0.90):.0f} us, p99 {q(0.99):.0f} us, max {rest[-1]:.0f} us")
PY
