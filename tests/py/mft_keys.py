"""Key files as mft-gateway writes them, read with the interop library's conventions."""

import base64
import hashlib

from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key


def hmac_secret(path):
    """The bytes of an HMAC key file: `base64:...` or the text itself."""
    text = open(path, encoding="utf-8").read().rstrip("\r\n")
    if text.startswith("base64:"):
        return base64.b64decode(text[len("base64:"):])
    return text.encode()


def hmac_key_id(secret):
    """mft-gateway's default key id (docs/signing.md), recomputed independently."""
    return hashlib.sha256(b"mft-gateway hmac-sha256 key id\0" + secret).hexdigest()[:16]


def ed25519_key_id(public_key):
    """mft-gateway's default Ed25519 key id, from the raw 32-byte public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(b"mft-gateway ed25519 key id\0" + raw).hexdigest()[:16]


def ed25519_public(path):
    return load_pem_public_key(open(path, "rb").read())


def ed25519_private(path):
    return load_pem_private_key(open(path, "rb").read(), password=None)
