"""SFTP bridge checks with paramiko (an independent SSH/SFTP client).

Usage: sftp_paramiko.py HOST PORT USER PASSWORD API_USER API_KEY WORKDIR

Prints one JSON object; the Rust test (tests/tests/e2e/sftp.rs) checks it
and what the backend stored.
"""
import concurrent.futures
import hashlib
import json
import os
import sys

import paramiko


def connect(host, port, user, password):
    t = paramiko.Transport((host, port))
    # Host key checking is the OpenSSH tests' business; here we accept it.
    t.connect(username=user, password=password)
    return t, paramiko.SFTPClient.from_transport(t)


def main():
    host, port, user, password, api_user, api_key, workdir = sys.argv[1:8]
    port = int(port)
    out = {}

    t, s = connect(host, port, user, password)
    out["password_login"] = True
    out["server_version"] = t.remote_version

    # Out-of-order writes within the window are reordered.
    f = s.open("ooo.bin", "wb")
    f.seek(65536)
    f.write(b"B" * 65536)
    f.seek(0)
    f.write(b"A" * 65536)
    f.close()
    out["ooo_sha256"] = hashlib.sha256(b"A" * 65536 + b"B" * 65536).hexdigest()

    # A write far beyond the window fails with a clear status.
    f = s.open("far.bin", "wb")
    try:
        f.seek(512 * 1024 * 1024)
        f.write(b"x")
        f.flush()
        out["far_error"] = None
    except IOError as e:
        out["far_error"] = str(e)
    try:
        f.close()
    except IOError:
        pass

    t.close()

    # API key as password for a user with api_key_login.
    t, s = connect(host, port, api_user, api_key)
    with s.open("via-key.txt", "wb") as f:
        f.write(b"logged in with an API key")
    out["api_key_login"] = True
    t.close()

    # Ten connections uploading in parallel.
    def put(i):
        data = os.urandom(200_000 + i)
        t, s = connect(host, port, user, password)
        try:
            with s.open(f"par{i}.bin", "wb") as f:
                f.set_pipelined(True)
                f.write(data)
        finally:
            t.close()
        return f"par{i}.bin", hashlib.sha256(data).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        out["parallel"] = dict(pool.map(put, range(10)))

    print(json.dumps(out))


if __name__ == "__main__":
    main()
