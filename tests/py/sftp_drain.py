#!/usr/bin/env python3
"""An SFTP upload across a gateway shutdown, with paramiko.

Usage: sftp_drain.py HOST PORT USER PASSWORD NAME SIZE

Opens NAME for writing and writes the first half of SIZE random bytes, then
prints "ready" and waits for a line on stdin (the test sends SIGTERM to the
gateway meanwhile). After that line it tries to open another file, writes
the second half and closes NAME, and prints one JSON line: the SHA-256 of
the bytes and the error of every step that failed (null when it worked).
"""
import hashlib
import json
import os
import sys

import paramiko

CHUNK = 32 * 1024


def write_all(f, data):
    for i in range(0, len(data), CHUNK):
        f.write(data[i:i + CHUNK])


def attempt(out, key, fn):
    try:
        fn()
        out[key] = None
    except Exception as e:  # noqa: BLE001 - the test wants every failure's text
        out[key] = f"{type(e).__name__}: {e}" or type(e).__name__


def main():
    host, port, user, password, name, size = sys.argv[1:7]
    size = int(size)
    data = os.urandom(size)
    out = {"sha256": hashlib.sha256(data).hexdigest()}
    t = paramiko.Transport((host, int(port)))
    t.connect(username=user, password=password)
    s = paramiko.SFTPClient.from_transport(t)
    s.get_channel().settimeout(60)
    f = s.open(name, "wb")
    half = size // 2
    write_all(f, data[:half])
    print("ready", flush=True)
    sys.stdin.readline()

    def late():
        s.open("late-" + name, "wb").close()

    attempt(out, "late_open_error", late)

    def rest():
        write_all(f, data[half:])
        f.close()

    attempt(out, "close_error", rest)
    try:
        t.close()
    except Exception:  # noqa: BLE001
        pass
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
