#!/usr/bin/env python3
"""A webhook receiver that verifies every request with the Standard Webhooks
reference implementation (PyPI `standardwebhooks`) and logs each one as a
JSON line, so the Rust test (tests/tests/e2e/webhooks.rs) can check what
arrived, how often, and under which webhook-id.

  webhook_receiver.py --port P --secret whsec_... --log FILE [--fail-first N]
                      [--hang-first N]

--fail-first N answers 500 to the first N requests of each webhook-id
(after verifying them), so the gateway must retry with the same id.
--hang-first N logs the first N requests of each webhook-id with status
"hung" and never answers them (the gateway is caught mid-send).
Prints "ready" on stdout once listening. Answers 204 to a verified request,
400 (logged with "verified": false) to one that does not verify.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--hang-first", type=int, default=0)
    args = p.parse_args()

    wh = Webhook(args.secret)
    seen = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            entry = {
                "webhook_id": headers.get("webhook-id"),
                "path": self.path,
            }
            try:
                payload = wh.verify(body, headers)
                entry["verified"] = True
                entry["type"] = payload.get("type")
                entry["data"] = payload.get("data")
            except Exception as e:  # any verification failure is logged
                entry["verified"] = False
                entry["error"] = repr(e)
            with lock:
                n = seen.get(entry["webhook_id"], 0) + 1
                seen[entry["webhook_id"]] = n
                entry["attempt"] = n
                if not entry["verified"]:
                    status = 400
                elif n <= args.hang_first:
                    status = "hung"
                elif n <= args.fail_first:
                    status = 500
                else:
                    status = 204
                entry["status"] = status
                with open(args.log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            if status == "hung":
                threading.Event().wait(600)
                return
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
