"""Stand-ins for two paid messaging APIs that cannot be reached from the
tests, built from their published documentation:

- aspsms.com JSON API (https://json.aspsms.com/): POST SendSimpleTextSMS,
  CheckCredits, InquireDeliveryNotifications with UserName/Password in the
  JSON body; answers carry StatusCode ("1" = OK) and StatusInfo.
- Threema Gateway (https://gateway.threema.ch/en/developer/api):
  GET /pubkeys/{id}, POST /send_e2e (form: from, to, nonce, box, secret),
  GET /credits, authenticated with from + secret.

For send_e2e the box is opened with PyNaCl (an independent NaCl
implementation) with the recipient's private key, and the plaintext is
checked: type 0x01, UTF-8 text, then PKCS#7-style padding of 1..255 bytes,
at least 32 bytes in all. Every request is logged as one JSON line. With
--fail-recipient ID --fail-while FILE, send_e2e to ID answers 500 (a
temporary failure) while FILE exists.
"""

import argparse
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nacl.public import Box, PrivateKey, PublicKey

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--log", required=True)
p.add_argument("--aspsms-user", required=True)
p.add_argument("--aspsms-password", required=True)
p.add_argument("--aspsms-credits", default="5")
p.add_argument("--threema-id", required=True)
p.add_argument("--threema-secret", required=True)
p.add_argument("--threema-gateway-key", required=True, help="the gateway ID's private key (hex), to know its public key")
p.add_argument("--threema-credits", default="1000")
p.add_argument("--recipient", action="append", default=[], help="ID:private key hex")
p.add_argument("--fail-recipient", help="send_e2e to this ID answers 500 (temporary) ...")
p.add_argument("--fail-while", help="... while this file exists")
args = p.parse_args()

gateway_public = PrivateKey(bytes.fromhex(args.threema_gateway_key)).public_key
recipients = {}
for r in args.recipient:
    rid, key = r.split(":", 1)
    recipients[rid] = PrivateKey(bytes.fromhex(key))


def log(entry):
    with open(args.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def threema_auth(self, params):
        return params.get("from") == args.threema_id and params.get("secret") == args.threema_secret

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if not self.threema_auth(q):
            log({"api": "threema", "path": url.path, "auth": False})
            return self.reply(401, "", "text/plain")
        if url.path.startswith("/pubkeys/"):
            rid = url.path[len("/pubkeys/"):]
            log({"api": "threema", "path": "/pubkeys", "id": rid})
            if rid not in recipients:
                return self.reply(404, "", "text/plain")
            return self.reply(200, bytes(recipients[rid].public_key).hex(), "text/plain")
        if url.path == "/credits":
            log({"api": "threema", "path": "/credits"})
            return self.reply(200, args.threema_credits, "text/plain")
        self.reply(404, "", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        path = urllib.parse.urlsplit(self.path).path
        if path == "/send_e2e":
            return self.send_e2e(dict(urllib.parse.parse_qsl(raw.decode())))
        body = json.loads(raw)
        method = path.strip("/")
        if body.get("UserName") != args.aspsms_user or body.get("Password") != args.aspsms_password:
            log({"api": "aspsms", "method": method, "auth": False})
            return self.reply(200, json.dumps({"StatusCode": "3", "StatusInfo": "Authorization failed."}))
        logged = {k: v for k, v in body.items() if k != "Password"}
        log({"api": "aspsms", "method": method, "body": logged})
        if method == "SendSimpleTextSMS":
            ok = isinstance(body.get("Recipients"), list) and body.get("MessageText") and body.get("Originator")
            if not ok:
                return self.reply(200, json.dumps({"StatusCode": "7", "StatusInfo": "Missing parameters."}))
            return self.reply(200, json.dumps({"StatusCode": "1", "StatusInfo": "OK"}))
        if method == "CheckCredits":
            return self.reply(200, json.dumps({"Credits": args.aspsms_credits, "StatusCode": "1", "StatusInfo": "OK"}))
        if method == "InquireDeliveryNotifications":
            refs = body.get("TransactionReferenceNumbers", "").split(";")
            notes = [{"TransactionReferenceNumber": r, "DeliveryStatus": "0",
                      "DeliveryStatusDescription": "Delivered", "Reasoncode": "000"} for r in refs if r]
            return self.reply(200, json.dumps({"StatusCode": "1", "StatusInfo": "OK", "DeliveryNotifications": notes}))
        self.reply(404, json.dumps({"StatusCode": "0", "StatusInfo": "unknown method"}))

    def send_e2e(self, form):
        if not self.threema_auth(form):
            log({"api": "threema", "path": "/send_e2e", "auth": False})
            return self.reply(401, "", "text/plain")
        rid = form.get("to", "")
        if rid not in recipients:
            return self.reply(400, "", "text/plain")
        if rid == args.fail_recipient and args.fail_while and os.path.exists(args.fail_while):
            log({"api": "threema", "path": "/send_e2e_refused", "to": rid})
            return self.reply(500, "", "text/plain")
        entry = {"api": "threema", "path": "/send_e2e", "to": rid}
        try:
            nonce = bytes.fromhex(form["nonce"])
            boxed = bytes.fromhex(form["box"])
            plain = Box(recipients[rid], gateway_public).decrypt(boxed, nonce)
            pad = plain[-1]
            entry["type"] = plain[0]
            entry["pad"] = pad
            entry["length"] = len(plain)
            entry["padding_ok"] = 1 <= pad <= 255 and len(plain) >= 32 and all(b == pad for b in plain[-pad:])
            entry["text"] = plain[1:-pad].decode("utf-8")
        except Exception as e:  # the test asserts on this
            entry["error"] = repr(e)
            log(entry)
            return self.reply(400, "", "text/plain")
        log(entry)
        self.reply(200, "%016x" % (len(open(args.log).read()) + 1), "text/plain")


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print("ready", flush=True)
sys.stdout.flush()
server.serve_forever()
