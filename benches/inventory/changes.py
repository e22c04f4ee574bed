#!/usr/bin/env python3
"""Single address changes, one after another, for benches/inventory_scale.sh.

    python3 benches/inventory/changes.py --api 127.0.0.1:PORT --token-file F \
        --sample SAMPLE.tsv --count 1000 --timeout 60 --budget 900 --out changes.tsv

For each number of SAMPLE.tsv (tenant, number, A1, A3, PC, as gen.py
writes it), in order: reads the inventory version the router routes on
(GET /v1/inventory, snapshot_version), sends
PUT /v1/tenants/{tenant}/numbers/{number}/address with a new street
address in the same city (an operator token, so no capability applies),
and times the request; then polls GET /v1/inventory until the
snapshot_version has moved past the one read before the PUT: the change
is then in the snapshot that new calls are routed on. The visibility time
is counted from the PUT's start.

Bounds: every request has --timeout seconds (a timed-out PUT counts as
failed and the next one goes on a new connection); no PUT starts after
--budget seconds; the visibility poll gives up after --timeout seconds.
Writes one line per change to --out, and key=value lines of the summary
on standard output.
"""

import argparse
import http.client
import json
import math
import sys
import time
import urllib.parse

STREETS = ["Harbor View", "Summit", "Quarry", "Bridge", "Ferry", "Station", "Garden", "Cove"]
SUFFIXES = ["St", "Ave", "Rd", "Dr", "Way"]


class Api:
    def __init__(self, hostport, token, timeout):
        self.hostport, self.timeout = hostport, timeout
        self.headers = {"Authorization": f"Bearer {token}"}
        self.conn = None

    def request(self, method, path, body=None):
        """(status, parsed JSON or text); raises OSError/HTTPException on
        a timeout or a broken connection (the connection is then dropped).
        A kept-alive connection the router closed meanwhile (its admin
        listener closes idle ones after idle_timeout_s, 30 s, and a PUT can
        take longer than that) is opened again once, before any answer."""
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                host, port = self.hostport.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
            headers = dict(self.headers)
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if reused and attempt == 1:
                    continue
                raise
            except Exception:
                self.conn.close()
                self.conn = None
                raise
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw.decode(errors="replace")


def pct(v, p):
    if not v:
        return float("nan")
    s = sorted(v)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--budget", type=float, default=900)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.token_file) as f:
        token = f.readline().strip()
    with open(a.sample) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    rows = rows[: a.count]
    if len(rows) < a.count:
        print(f"changes.py: only {len(rows)} sampled numbers for {a.count} changes", file=sys.stderr)
    put = Api(a.api, token, a.timeout)
    poll = Api(a.api, token, a.timeout)
    lat, vis = [], []
    failed = timeouts = not_visible = 0
    stopped = ""
    first_version = last_version = None
    last_ok = None
    start = time.monotonic()
    out = open(a.out, "w")
    out.write("i\tat_s\tnumber\tstatus\tput_ms\tvisible_ms\tversion\n")
    for i, (tenant, number, st, city, pc) in enumerate(rows):
        if time.monotonic() - start > a.budget:
            stopped = f"budget of {a.budget:.0f} s spent after {i} changes"
            break
        try:
            s, v = poll.request("GET", "/v1/inventory")
            v0 = v["snapshot_version"] if s == 200 else None
        except Exception as e:
            print(f"changes.py: GET /v1/inventory before change {i}: {e}", file=sys.stderr)
            v0 = None
        if first_version is None:
            first_version = v0
        body = {"A1": st, "A3": city, "RD": STREETS[i % len(STREETS)],
                "STS": SUFFIXES[i % len(SUFFIXES)], "HNO": str(1000 + i), "PC": pc}
        path = (f"/v1/tenants/{urllib.parse.quote(tenant, safe='')}/numbers/"
                f"{urllib.parse.quote(number, safe='')}/address")
        t0 = time.monotonic()
        status = "error"
        try:
            code, resp = put.request("PUT", path, body)
            status = str(code)
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            status = "timeout" if "timed out" in str(e) else "error"
        t1 = time.monotonic()
        put_ms = (t1 - t0) * 1000
        vis_ms = None
        version = ""
        if status == "200":
            lat.append(put_ms)
            last_ok = (tenant, number, body)
            # Visible: the snapshot the router routes on has moved on.
            deadline = t0 + a.timeout
            while time.monotonic() < deadline:
                try:
                    s, v = poll.request("GET", "/v1/inventory")
                except Exception:
                    # A slow answer or a dropped connection: ask again on a
                    # new one until the deadline.
                    time.sleep(0.05)
                    continue
                if s == 200 and v0 is not None and v["snapshot_version"] > v0:
                    vis_ms = (time.monotonic() - t0) * 1000
                    version = v["snapshot_version"]
                    last_version = version
                    break
                time.sleep(0.002)
            if vis_ms is None:
                not_visible += 1
            else:
                vis.append(vis_ms)
        else:
            failed += 1
            if status == "timeout":
                timeouts += 1
            print(f"changes.py: change {i} ({number}): {status}"
                  + (f" {resp}" if status not in ("timeout", "error") else
                     f" after {put_ms / 1000:.1f} s"), file=sys.stderr)
        out.write(f"{i}\t{t0 - start:.3f}\t{number}\t{status}\t{put_ms:.1f}\t"
                  f"{'' if vis_ms is None else f'{vis_ms:.1f}'}\t{version}\n")
        out.flush()
        if (i + 1) % 100 == 0:
            print(f"changes.py: {i + 1} changes, {time.monotonic() - start:.0f} s", file=sys.stderr)
    wall = time.monotonic() - start
    # The last change, read back from the database.
    verified = ""
    if last_ok:
        tenant, number, body = last_ok
        try:
            s, v = put.request("GET", f"/v1/tenants/{urllib.parse.quote(tenant, safe='')}"
                                      f"/numbers/{urllib.parse.quote(number, safe='')}")
            verified = "yes" if s == 200 and v.get("address", {}).get("HNO") == body["HNO"] else "no"
        except Exception:
            verified = "no"
    summary = {
        "asked": len(rows), "done": len(lat) + failed, "ok": len(lat), "failed": failed,
        "timeouts": timeouts, "not_visible": not_visible, "wall_s": f"{wall:.1f}",
        "put_median_ms": f"{pct(lat, 50):.1f}", "put_p99_ms": f"{pct(lat, 99):.1f}",
        "put_max_ms": f"{max(lat) if lat else float('nan'):.1f}",
        "visible_median_ms": f"{pct(vis, 50):.1f}", "visible_p99_ms": f"{pct(vis, 99):.1f}",
        "visible_max_ms": f"{max(vis) if vis else float('nan'):.1f}",
        "first_version": first_version, "last_version": last_version,
        "verified": verified, "stopped": stopped.replace(" ", "_"),
    }
    for k, v in summary.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main()
