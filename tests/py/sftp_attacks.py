"""Hostile SFTP write patterns, sent with paramiko's own request pipeline.

Usage: sftp_attacks.py HOST PORT USER PASSWORD OVERLAPPING ADJACENT

- OVERLAPPING 2 KiB WRITEs at offsets 1, 2, 3, ... (each overlaps the one
  before; offset 0 is never written, so nothing can ever be streamed on);
- ADJACENT 1-byte WRITEs at offsets 1, 2, 3, ... on a second file (no
  overlap, but each one is a separate held write).

Every request is sent without waiting for its answer (at most WINDOW
outstanding, as a pipelining client does), and every answer is read. Prints
one JSON object with the number of OK and error statuses per pattern and the
first error text.
"""
import json
import sys

import paramiko
from paramiko.sftp import CMD_WRITE, int64

WINDOW = 256


def flood(sftp, name, count, size):
    f = sftp.open(name, "wb")
    handle = f.handle
    outstanding = []
    ok = errors = 0
    first_error = None

    def settle(num):
        nonlocal ok, errors, first_error
        try:
            sftp._read_response(num)
            ok += 1
        except IOError as e:
            errors += 1
            if first_error is None:
                first_error = str(e)

    data = b"x" * size
    for i in range(count):
        num = sftp._async_request(type(None), CMD_WRITE, handle, int64(1 + i), data)
        outstanding.append(num)
        if len(outstanding) >= WINDOW:
            settle(outstanding.pop(0))
    for num in outstanding:
        settle(num)
    try:
        f.close()
        closed = "ok"
    except IOError as e:
        closed = str(e)
    return {"ok": ok, "errors": errors, "first_error": first_error, "close": closed}


def main():
    host, port, user, password, overlapping, adjacent = sys.argv[1:7]
    t = paramiko.Transport((host, int(port)))
    t.connect(username=user, password=password)
    sftp = paramiko.SFTPClient.from_transport(t)
    out = {
        "overlapping": flood(sftp, "overlap.bin", int(overlapping), 2048),
        "adjacent": flood(sftp, "adjacent.bin", int(adjacent), 1),
    }
    t.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
