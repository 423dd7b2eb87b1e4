#!/usr/bin/env python3
"""A real SMTP server (PyPI aiosmtpd) for the outbound transport tests
(tests/tests/e2e/transports.rs): STARTTLS required, AUTH required (only
after TLS), one user. Every accepted message is appended to --log as one
JSON line {"mail_from", "rcpt_tos", "data", "login", "tls", "peer" (the
client's address), "time" (Unix time of the end of DATA)}.

  smtp_server.py --port P --cert PEM --key PEM --user U --password PW --log FILE

Prints "ready" on stdout once listening.
"""
import argparse
import json
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            entry = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "login": (session.auth_data.login.decode()
                          if isinstance(session.auth_data, LoginPassword) else None),
                "tls": session.ssl is not None,
                "peer": session.peer[0] if session.peer else None,
                "time": time.time(),
            }
            with lock:
                with open(args.log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            return "250 2.0.0 Ok: queued by aiosmtpd"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == args.user.encode()
              and auth_data.password == args.password.encode())
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=args.port,
        server_hostname="localhost",
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
