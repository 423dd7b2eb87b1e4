"""A stand-in backend that verifies every request with the PyPI
`http-message-signatures` library and answers 200 (with what it verified)
or 401. Run as the gateway's upstream by tests/tests/e2e/signing.rs.

    verify_upstream.py --listen 127.0.0.1:0 --alg hmac-sha256 --key-file KEY
"""

import argparse
import datetime
import json
import sys
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, InvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256

import mft_keys

REQUIRED = ("@method", "@authority", "@path", "@query", "x-request-id", "x-mft-principal", "x-mft-scopes")


class AnyIdResolver(HTTPSignatureKeyResolver):
    """One trusted key whatever the key id says: the signature decides."""

    def __init__(self, key):
        self.key = key

    def resolve_public_key(self, key_id):
        return self.key

    def resolve_private_key(self, key_id):
        raise KeyError(key_id)


def make_handler(verifier, expected_key_id):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/healthz":
                return self.answer(200, {"status": "ok"})
            message = types.SimpleNamespace(
                method=self.command,
                url="http://" + self.headers.get("Host", "") + self.path,
                headers=self.headers,
            )
            required = REQUIRED + (("content-length",) if "Content-Length" in self.headers else ())
            try:
                results = verifier.verify(
                    message,
                    max_age=datetime.timedelta(seconds=300),
                    expect_tag="mft-gateway",
                    require_components=required,
                )
            except InvalidSignature as e:
                return self.answer(401, {"verified": False, "error": str(e)})
            r = results[0]
            self.answer(
                200,
                {
                    "verified": True,
                    "label": r.label,
                    "covered": list(r.covered_components.keys()),
                    "parameters": {k: v for k, v in r.parameters.items()},
                    "body_bytes": len(body),
                    "expected_keyid": expected_key_id,
                },
            )

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

        def log_message(self, fmt, *args):
            sys.stderr.write("verify_upstream: " + (fmt % args) + "\n")

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--alg", choices=["hmac-sha256", "ed25519"], required=True)
    p.add_argument("--key-file", required=True, help="HMAC key file, or Ed25519 public key PEM")
    a = p.parse_args()
    if a.alg == "hmac-sha256":
        secret = mft_keys.hmac_secret(a.key_file)
        verifier = HTTPMessageVerifier(signature_algorithm=HMAC_SHA256, key_resolver=AnyIdResolver(secret))
        key_id = mft_keys.hmac_key_id(secret)
    else:
        public = mft_keys.ed25519_public(a.key_file)
        verifier = HTTPMessageVerifier(signature_algorithm=ED25519, key_resolver=AnyIdResolver(public))
        key_id = mft_keys.ed25519_key_id(public)
    host, port = a.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), make_handler(verifier, key_id))
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
