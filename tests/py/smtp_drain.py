#!/usr/bin/env python3
"""SIGTERM while SMTP clients are connected, with Python's smtplib.

Opens two authenticated STARTTLS sessions: A stays idle after EHLO, B starts
a message and sends half of it in DATA. Then prints "ready" and waits for a
line on stdin (the test sends SIGTERM to the gateway meanwhile). After that
line it waits until the listener refuses new connections (the drain began),
reads A's unsolicited reply, finishes B's message and reads its replies, and
prints one JSON line with every reply.

  smtp_drain.py --port P --cafile PEM --password KEY --subject S
"""
import argparse
import base64
import json
import os
import smtplib
import socket
import ssl
import sys
import time


def session(port, ctx, password):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("client.example")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    s.user, s.password = "svc", password
    code, _ = s.auth("PLAIN", s.auth_plain)
    assert code == 235, code
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--size", type=int, default=4 << 20)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    out = {}

    idle = session(a.port, ctx, a.password)
    busy = session(a.port, ctx, a.password)
    busy.mail("alice@partner.example")
    busy.rcpt("bob@ourcorp.example")
    code, msg = busy.docmd("DATA")
    out["data"] = [code, msg.decode()]
    payload = os.urandom(a.size)
    attachment = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    message = (
        b"From: alice@partner.example\r\nTo: bob@ourcorp.example\r\n"
        + f"Subject: {a.subject}\r\n".encode()
        + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsent across a shutdown\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="drain.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--b1--\r\n"
    )
    half = len(message) // 2
    busy.send(message[:half])
    print("ready", flush=True)
    sys.stdin.readline()

    # The drain began once the port refuses new clients.
    deadline = time.time() + 10
    refused = False
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=2).close()
            time.sleep(0.05)
        except ConnectionRefusedError:
            refused = True
            break
    out["new_connection_refused"] = refused

    # A: told to go away, unasked (RFC 5321 3.8).
    code, msg = idle.getreply()
    out["idle"] = [code, msg.decode()]

    # B: the message in progress is finished and accepted.
    time.sleep(0.5)
    busy.send(message[half:] + b"\r\n.\r\n")
    code, msg = busy.getreply()
    out["end_of_data"] = [code, msg.decode()]
    code, msg = busy.getreply()
    out["after_message"] = [code, msg.decode()]
    out["sha256"] = __import__("hashlib").sha256(payload).hexdigest()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
