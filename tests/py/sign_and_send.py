"""Signs requests to mft-backend with the PyPI `http-message-signatures`
library (not our code) and prints one JSON line per request sent:
`{"case": ..., "status": ..., "body": ...}`.

    sign_and_send.py --url http://127.0.0.1:PORT --key-file KEY
"""

import argparse
import datetime
import json
import secrets
import uuid

import requests
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256

import mft_keys


class Resolver(HTTPSignatureKeyResolver):
    def __init__(self, secret):
        self.secret = secret

    def resolve_private_key(self, key_id):
        return self.secret

    def resolve_public_key(self, key_id):
        return self.secret


def signed(base, signer, key_id):
    req = requests.Request(
        "GET", base + "/api/v1/files?folder=py", headers={"X-Request-Id": str(uuid.uuid4())}
    ).prepare()
    now = datetime.datetime.now(datetime.timezone.utc)
    signer.sign(
        req,
        key_id=key_id,
        created=now,
        expires=now + datetime.timedelta(seconds=30),
        nonce=secrets.token_urlsafe(16),
        label="py",
        tag="mft-gateway",
        covered_component_ids=("@method", "@authority", "@path", "@query", "x-request-id"),
    )
    return req


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", required=True)
    a = p.parse_args()
    secret = mft_keys.hmac_secret(a.key_file)
    signer = HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=Resolver(secret))
    key_id = mft_keys.hmac_key_id(secret)
    session = requests.Session()

    def send(case, req):
        r = session.send(req)
        print(json.dumps({"case": case, "status": r.status_code, "body": r.text}), flush=True)

    req = signed(a.url, signer, key_id)
    send("valid", req)
    send("replayed", req)
    tampered = signed(a.url, signer, key_id)
    tampered.prepare_url(a.url + "/api/v1/files?folder=other", None)
    send("tampered-query", tampered)
    tampered = signed(a.url, signer, key_id)
    tampered.headers["X-Request-Id"] = str(uuid.uuid4())
    send("tampered-header", tampered)
    send("unknown-key-id", signed(a.url, signer, "0000000000000000"))


if __name__ == "__main__":
    main()
