#!/usr/bin/env python3
"""A bounded flood of SIP INVITEs over UDP, for the attack scripts.

Sends INVITEs for one dial string to the router at a steady rate from one
socket, each with its own Call-ID and branch, never acknowledging or
retransmitting anything (an attacker does not), and counts the answers by
status code. Stops by itself after --seconds; prints one JSON object.

    python3 benches/sipflood.py --to 127.0.0.1:5060 --rate 15000 --seconds 60
"""

import argparse
import json
import socket
import threading
import time

TEMPLATE = (
    "INVITE sip:{number}@{host} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {me};branch=z9hG4bKfl{n}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:+12125550199@{me}>;tag=fl{n}\r\n"
    "To: <sip:{number}@{host}>\r\n"
    "Call-ID: flood-{n}@{me}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:+12125550199@{me}>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {sdp_len}\r\n"
    "\r\n"
    "{sdp}"
)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--to", required=True, help="router HOST:PORT")
    ap.add_argument("--bind", default="127.0.0.1", help="source address")
    ap.add_argument("--rate", type=int, default=15000, help="INVITEs a second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--number", default="5551234", help="dial string")
    args = ap.parse_args()
    if args.rate <= 0 or not 0 < args.seconds <= 600:
        ap.error("rate must be positive and seconds within 600")

    host, port = args.to.rsplit(":", 1)
    dest = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((args.bind, 0))
    me = "%s:%d" % sock.getsockname()
    sdp = SDP.format(ip=args.bind)
    # The message split around its counter, so each one is a join, not a
    # format: the flood must cost the sender little.
    marker = "\x00"
    text = TEMPLATE.format(
        number=args.number, host=host, me=me, n=marker, sdp_len=len(sdp), sdp=sdp
    ).encode()
    pieces = text.split(marker.encode())

    counts = {}
    stop = threading.Event()

    def receive():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            code = data[8:11].decode("ascii", "replace")
            counts[code] = counts.get(code, 0) + 1

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()

    tick = 0.005
    per_tick = args.rate * tick
    sent = 0
    errors = 0
    due = 0.0
    start = time.perf_counter()
    end = start + args.seconds
    next_tick = start
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due += per_tick
        while due >= 1.0:
            n = str(sent).encode()
            try:
                sock.sendto(n.join(pieces), dest)
            except OSError:
                errors += 1
            sent += 1
            due -= 1.0
        next_tick += tick
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    time.sleep(1.0)  # the last answers
    stop.set()
    rx.join(timeout=2)
    sock.close()
    print(
        json.dumps(
            {
                "sent": sent,
                "send_errors": errors,
                "seconds": round(elapsed, 2),
                "rate": round(sent / elapsed) if elapsed else 0,
                "answers": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
