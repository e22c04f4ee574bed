#!/usr/bin/env python3
"""Seed directories for the targets whose input starts with a mode byte.

  seeds/decision  emergency INVITEs as whole datagrams (byte 0), PIDF-LO
                  documents alone (byte 1, with the carrier trunk; byte 3,
                  without)
  seeds/core      emergency INVITEs, torture messages and golden outputs,
                  each a datagram from the caller (byte 0); and call flows
                  of several datagrams (see FLOWS)

Run from anywhere; the directories land in fuzz/seeds (kept out of git).
"""

import shutil
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
CORPUS = FUZZ.parent / "tests" / "corpus"
SEEDS = FUZZ / "seeds"

# Senders of the core target (the low two bits of a datagram's first byte).
CALLER, PSAP, SCREENING, STRANGER = 0, 1, 2, 3
SEP = b"\0\0"

# c02 routes to the PSAP trunk first (a trusted location), the screening
# trunk next.
C02 = (CORPUS / "emergency-invites" / "c02-us-geo-point.sip").read_bytes()
DIALOG = (
    b"From: <sip:+13035550117@example.com>;tag=7a1fc02-\r\n"
    b"Call-ID: c02-41aa90@192.0.2.20\r\n"
)


def response(code, reason, method="INVITE", seq=1, to_tag=b"p1"):
    """A trunk's response; the fuzz target adds the Via lines."""
    return (
        b"SIP/2.0 %d %s\r\n" % (code, reason)
        + b"To: <sip:911@proxy.example.net>;tag=" + to_tag + b"\r\n"
        + DIALOG
        + b"CSeq: %d %s\r\n" % (seq, method.encode())
        + b"Contact: <sip:psap@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
    )


def in_dialog(method, seq, branch):
    """The caller's request within the dialog, along the router's route."""
    return (
        b"%s sip:psap@127.0.0.1:5070 SIP/2.0\r\n" % method.encode()
        + b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=" + branch + b"\r\n"
        + b"Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\n"
        + b"To: <sip:911@proxy.example.net>;tag=p1\r\n"
        + DIALOG
        + b"CSeq: %d %s\r\nContent-Length: 0\r\n\r\n" % (seq, method.encode())
    )


CANCEL = (
    C02.split(b"\r\n\r\n")[0]
    .replace(b"INVITE sip:", b"CANCEL sip:", 1)
    .replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    .split(b"Content-Type:")[0]
    + b"Content-Length: 0\r\n\r\n"
)


def flow(*steps):
    """(sender, 100 ms steps before it, datagram) ... as one input."""
    return SEP.join(bytes([sender | (wait << 2)]) + data for sender, wait, data in steps)


FLOWS = {
    "answered-then-bye": flow(
        (CALLER, 0, C02),
        (PSAP, 1, response(180, b"Ringing")),
        (PSAP, 5, response(200, b"OK")),
        (CALLER, 0, in_dialog("ACK", 1, b"z9hG4bKc02ack")),
        (CALLER, 20, in_dialog("BYE", 2, b"z9hG4bKc02bye")),
        (PSAP, 0, response(200, b"OK", "BYE", 2)),
    ),
    "psap-503-screening-answers": flow(
        (CALLER, 0, C02),
        (PSAP, 1, response(503, b"Service Unavailable")),
        (SCREENING, 2, response(200, b"OK", to_tag=b"s1")),
    ),
    "cancelled-while-ringing": flow(
        (CALLER, 0, C02),
        (PSAP, 1, response(180, b"Ringing")),
        (CALLER, 10, CANCEL),
        (PSAP, 0, response(200, b"OK", "CANCEL")),
        (PSAP, 0, response(487, b"Request Terminated")),
    ),
    "psap-silent": flow(
        (CALLER, 0, C02),
        (STRANGER, 40, b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n"),
    ),
}


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    decision, core = SEEDS / "decision", SEEDS / "core"
    decision.mkdir(parents=True)
    core.mkdir(parents=True)
    for f in sorted((CORPUS / "emergency-invites").glob("*.sip")):
        (decision / f"sip-{f.stem}").write_bytes(b"\0" + f.read_bytes())
    for f in sorted((CORPUS / "pidf").glob("*.xml")):
        (decision / f"pidf-{f.stem}").write_bytes(b"\1" + f.read_bytes())
        (decision / f"pidf-no-trunk-{f.stem}").write_bytes(b"\3" + f.read_bytes())
    for d in (CORPUS / "emergency-invites", CORPUS / "torture", FUZZ.parent / "tests" / "golden"):
        for f in sorted(d.glob("*.sip")):
            (core / f"{d.name}-{f.stem}").write_bytes(b"\0" + f.read_bytes())
    for name, data in FLOWS.items():
        (core / f"flow-{name}").write_bytes(data)
    print(f"{decision}: {len(list(decision.iterdir()))} files; {core}: {len(list(core.iterdir()))} files")


if __name__ == "__main__":
    main()
