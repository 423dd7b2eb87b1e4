#!/usr/bin/env python3
"""Attackers for benches/mixed/run (issue 21, "mixed attack"), all at once:

  idle       N TLS connections that complete the handshake and send nothing,
             spread over loopback source addresses 127.0.1.1.. (the gateway
             caps connections per client address: limits.max_connections_per_ip)
  slowloris  S connections from 127.0.0.77 that send a request head one byte
             a second and never finish it
  flood      requests with a wrong API key from 127.0.0.66, as fast as
             C keep-alive connections allow (401 until the defender bans the
             address, then 429; the per-IP rate limit answers 429 too)

Prints "ready" on stderr once the idle connections are up, runs until
SIGTERM, then prints one JSON report on stdout.
"""
import argparse
import asyncio
import json
import signal
import ssl
import sys
import time


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


async def idle(args, ctx, stats, stop):
    per_ip = args.idle_per_ip
    conns = []

    async def one(i):
        src = f"127.0.1.{1 + i // per_ip}"
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.port, ssl=ctx, local_addr=(src, 0)),
                30,
            )
            stats["idle_open"] += 1
            conns.append((r, w))
        except Exception as e:  # refused, reset, timeout: counted, not fatal
            stats["idle_failed"] += 1
            stats["idle_errors"][type(e).__name__] = stats["idle_errors"].get(type(e).__name__, 0) + 1

    sem = asyncio.Semaphore(200)

    async def bounded(i):
        async with sem:
            await one(i)

    t0 = time.monotonic()
    await asyncio.gather(*(bounded(i) for i in range(args.idle)))
    stats["idle_setup_s"] = round(time.monotonic() - t0, 1)
    print("ready", file=sys.stderr, flush=True)
    await stop.wait()
    # How many the gateway closed meanwhile (EOF readable).
    closed = 0
    for r, w in conns:
        if r.at_eof() or w.is_closing():
            closed += 1
        else:
            try:
                data = await asyncio.wait_for(r.read(1), 0.001)
                closed += data == b""
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
                pass
        w.transport.abort()
    stats["idle_closed_by_gateway"] = closed


async def slowloris(args, ctx, stats, stop):
    async def one():
        t0 = time.monotonic()
        try:
            r, w = await asyncio.open_connection(args.host, args.port, ssl=ctx, local_addr=("127.0.0.77", 0))
        except Exception:
            stats["slowloris_refused"] += 1
            return
        head = b"POST /api/v1/files HTTP/1.1\r\nHost: localhost\r\nX-Filename: slow.bin\r\nX-Pad: " + b"a" * 4096
        cut = False
        try:
            for b in head:
                if stop.is_set():
                    break
                w.write(bytes([b]))
                await w.drain()
                await asyncio.sleep(1)
                if r.at_eof():
                    cut = True
                    break
        except (ConnectionError, ssl.SSLError, OSError):
            cut = True
        finally:
            w.transport.abort()
        if cut:
            # Only connections the gateway ended count; the rest were stopped.
            stats["slowloris_held_s"].append(round(time.monotonic() - t0, 1))
        else:
            stats["slowloris_still_open_at_stop"] += 1

    while not stop.is_set():
        tasks = [asyncio.create_task(one()) for _ in range(args.slowloris)]
        await asyncio.wait(tasks)


async def flood(args, ctx, stats, stop):
    req = (
        b"GET /api/v1/files HTTP/1.1\r\nHost: localhost\r\n"
        b"X-API-Key: " + args.bad_key.encode() + b"\r\n\r\n"
    )

    async def conn():
        while not stop.is_set():
            try:
                r, w = await asyncio.open_connection(args.host, args.port, ssl=ctx, local_addr=("127.0.0.66", 0))
            except Exception:
                stats["flood_connect_refused"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while not stop.is_set():
                    w.write(req)
                    await w.drain()
                    status = await r.readline()
                    if not status:
                        break
                    code = status.split()[1].decode()
                    stats["flood_status"][code] = stats["flood_status"].get(code, 0) + 1
                    length = 0
                    while True:
                        line = await r.readline()
                        if line in (b"\r\n", b""):
                            break
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if length:
                        await r.readexactly(length)
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
                stats["flood_closed"] += 1
            finally:
                w.transport.abort()

    await asyncio.gather(*(conn() for _ in range(args.flood_conns)))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--idle-per-ip", type=int, default=500)
    p.add_argument("--slowloris", type=int, default=200)
    p.add_argument("--flood-conns", type=int, default=8)
    p.add_argument("--bad-key", required=True, help="an API key with a wrong secret")
    args = p.parse_args()
    ctx = tls_context(args.cafile)
    stats = {
        "idle_open": 0, "idle_failed": 0, "idle_errors": {},
        "slowloris_refused": 0, "slowloris_held_s": [], "slowloris_still_open_at_stop": 0,
        "flood_status": {}, "flood_closed": 0, "flood_connect_refused": 0,
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    idle_task = asyncio.create_task(idle(args, ctx, stats, stop))
    others = [
        asyncio.create_task(slowloris(args, ctx, stats, stop)),
        asyncio.create_task(flood(args, ctx, stats, stop)),
    ]
    await stop.wait()
    await asyncio.wait(others, timeout=5)
    await asyncio.wait([idle_task], timeout=30)
    held = stats.pop("slowloris_held_s")
    stats["slowloris_cut_by_gateway"] = len(held)
    stats["slowloris_held_max_s"] = max(held) if held else None
    stats["slowloris_held_median_s"] = sorted(held)[len(held) // 2] if held else None
    print(json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
