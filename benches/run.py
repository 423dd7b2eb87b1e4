#!/usr/bin/env python3
"""Side-by-side benchmark of mft-gateway, nginx and haproxy (see benches/run).

All three proxies do the same work (benches/peers/): terminate TLS 1.3, check
an API key (401 otherwise), apply a per-key rate limit set far above the
offered load, add a principal header and strip the key, and forward over
keep-alive HTTP/1.1 to one shared upstream (benches/upstream). Every figure
is the median of several runs with its spread, and each proxy's figure is
also given as a ratio to nginx measured in the same run on the same machine.
"""

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
PEERS = os.path.join(ROOT, "benches", "peers")
# Another build of the gateway to compare against (A/B runs): MFT_BENCH_GATEWAY=path.
GATEWAY = os.environ.get("MFT_BENCH_GATEWAY", os.path.join(REL, "mft-gateway"))
# A second build measured in the same run as peer "gateway-b" (before/after).
GATEWAY_B = os.environ.get("MFT_BENCH_GATEWAY_B")
CLK = os.sysconf("SC_CLK_TCK")
PROXIES = ["nginx", "haproxy", "pingora", "hyper", "hyper-percore", "hyper-driven", "hyper-pingora", "gateway", "gateway-stealing", "gateway-pingora", "gateway-b"]
# "pingora" is gateway/examples/bare_proxy.rs: the gateway's TLS front and
# pingora proxy doing only the peers' work, i.e. the framework's floor;
# "hyper" is gateway/examples/bare_hyper.rs, the same floor on hyper (plain
# tokio); "hyper-pingora" the same binary inside pingora's Server, as the
# gateway's hyper engine runs: their difference is pingora as the runtime;
# "hyper-percore" the same floor on one single-threaded runtime per worker
# thread with SO_REUSEPORT sockets (nginx's model): its difference to "hyper"
# is tokio's work-stealing scheduler. "hyper-driven" is "hyper-percore" with
# no task per upstream connection (the request's task drives it) and a plain
# stack of idle connections instead of hyper-util's pooled Client: its
# difference to "hyper-percore" is that Client plus the hop between the two
# tasks (the gateway, which has its own pool, gained nothing from the hop
# alone: docs/benchmarks.md, ninth round).
# "gateway" runs the defaults (hyper engine, one runtime per core),
# "gateway-stealing" the same with `runtime = "work-stealing"` (one
# multi-threaded tokio runtime), "gateway-pingora" `http_engine = "pingora"`.
BARE = os.path.join(REL, "examples", "bare_proxy")
BARE_HYPER = os.path.join(REL, "examples", "bare_hyper")
LABELS = {"nginx": "nginx", "haproxy": "haproxy", "pingora": "pingora floor",
          "hyper": "hyper floor", "hyper-percore": "hyper floor, runtime per core",
          "hyper-driven": "hyper floor, per core, upstream driven by the request",
          "hyper-pingora": "hyper floor in pingora's Server",
          "gateway": "mft-gateway", "gateway-stealing": "mft-gateway, work-stealing runtime",
          "gateway-pingora": "mft-gateway, pingora engine",
          "gateway-b": "mft-gateway, other build (MFT_BENCH_GATEWAY_B)"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """pid and all its descendants (nginx workers)."""
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and int(entry) not in tree:
                tree.add(int(entry))
                frontier.append(int(entry))
    return sorted(tree)


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK


def rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total / 1024


class PeakRss:
    """Samples the summed RSS of a process tree every 50 ms in a thread."""

    def __init__(self, pids):
        self.pids, self.peak, self._stop = pids, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pids))
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def fill(template, out, values):
    with open(os.path.join(PEERS, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    with open(out, "w") as f:
        f.write(text)
    return out


def wait_port(port, proc, what, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            log = getattr(proc, "log_path", None)
            tail = open(log).read()[-2000:] if log else ""
            sys.exit(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port} within {limit}s")


def curl(args):
    out = subprocess.run(["curl", "-sS", "-k", *args], capture_output=True, text=True)
    return out.stdout, out.returncode


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="mft-bench-")
        self.procs = []
        self.ports = {}
        self.results = {}  # (peer, metric) -> [values]

    def spawn(self, name, cmd, **kw):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def record(self, peer, metric, value):
        self.results.setdefault((peer, metric), []).append(value)

    # ---- set-up ---------------------------------------------------------

    def setup(self):
        w = self.work
        self.cert, self.key_file = f"{w}/cert.pem", f"{w}/key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", self.key_file, "-out", self.cert],
            check=True, capture_output=True)
        with open(f"{w}/haproxy.pem", "w") as f:
            f.write(open(self.cert).read() + open(self.key_file).read())
        up = free_port()
        self.upstream = f"127.0.0.1:{up}"
        p = self.spawn("upstream", [f"{REL}/mft-bench-upstream", self.upstream])
        wait_port(up, p, "upstream")
        self.pids = {"direct": [p.pid]}
        workers = self.args.workers
        common = {"WORK": w, "UPSTREAM": self.upstream, "CERT": self.cert, "KEY": self.key_file,
                  "WORKERS": workers, "PEM": f"{w}/haproxy.pem",
                  # The same idle upstream connections as nginx's 256 per worker.
                  "POOL": 256 * int(workers)}

        # The gateway's key store makes the key; the peers check the same string.
        subprocess.run([GATEWAY, "signing-key", "generate", "--algorithm",
                        "hmac-sha256", "--out", f"{w}/signing.key"], check=True, capture_output=True)
        gport, admin = free_port(), free_port()
        cfg = fill("gateway.toml", f"{w}/gateway.toml", {**common, "PORT": gport, "ADMIN": admin})
        out = subprocess.run([GATEWAY, "keys", "create", "--name", "bench",
                              "--scopes", "files:read,files:write", "--json", "--config", cfg],
                             capture_output=True, text=True, check=True)
        self.api_key = re.search(r'"key":"([^"]+)"', out.stdout).group(1)
        common["APIKEY"] = self.api_key
        # Variants of the gateway: the same key store (a copy made before
        # any starts), own ports, pid file and audit trail.
        variants = [("gateway-stealing", 'runtime = "work-stealing"', GATEWAY),
                    ("gateway-pingora", 'http_engine = "pingora"', GATEWAY),
                    ("gateway-b", None, GATEWAY_B)]
        for name, server_line, binary in variants:
            if name not in self.args.peer_list:
                continue
            if binary is None:
                sys.exit(f"{name}: set MFT_BENCH_GATEWAY_B to the other build")
            shutil.copytree(f"{w}/gateway-data", f"{w}/{name}-data")
            yport, yadmin = free_port(), free_port()
            text = open(cfg).read()
            if server_line:
                text = text.replace("[server]\n", f"[server]\n{server_line}\n", 1)
            text = text.replace(f"127.0.0.1:{gport}\"", f"127.0.0.1:{yport}\"")
            text = text.replace(f"127.0.0.1:{admin}\"", f"127.0.0.1:{yadmin}\"")
            text = text.replace(f"{w}/gateway-data", f"{w}/{name}-data")
            ycfg = f"{w}/{name}.toml"
            with open(ycfg, "w") as f:
                f.write(text)
            p = self.spawn(name, [binary, "run", "--config", ycfg])
            wait_port(yport, p, name)
            self.ports[name], self.pids[name] = yport, [p.pid]
        p = self.spawn("gateway", [GATEWAY, "run", "--config", cfg])
        wait_port(gport, p, "gateway")
        self.ports["gateway"], self.pids["gateway"] = gport, [p.pid]

        nport = free_port()
        for d in ["nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"]:
            os.makedirs(f"{w}/{d}", exist_ok=True)
        ncfg = fill("nginx.conf", f"{w}/nginx.conf", {**common, "PORT": nport})
        p = self.spawn("nginx", ["nginx", "-c", ncfg, "-p", w])
        wait_port(nport, p, "nginx")
        self.ports["nginx"] = nport
        self.pids["nginx"] = children(p.pid)

        if "pingora" in self.args.peer_list:
            bport = free_port()
            p = self.spawn("pingora", [BARE, f"127.0.0.1:{bport}", self.upstream, self.cert,
                                       self.key_file, str(workers), self.api_key])
            wait_port(bport, p, "pingora (bare_proxy)")
            self.ports["pingora"], self.pids["pingora"] = bport, [p.pid]

        if "hyper" in self.args.peer_list:
            yport = free_port()
            p = self.spawn("hyper", [BARE_HYPER, f"127.0.0.1:{yport}", self.upstream, self.cert,
                                     self.key_file, str(workers), self.api_key])
            wait_port(yport, p, "hyper (bare_hyper)")
            self.ports["hyper"], self.pids["hyper"] = yport, [p.pid]

        if "hyper-percore" in self.args.peer_list:
            yport = free_port()
            p = self.spawn("hyper-percore", [BARE_HYPER, f"127.0.0.1:{yport}", self.upstream,
                                             self.cert, self.key_file, str(workers), self.api_key],
                           env={**os.environ, "BARE_HYPER_PER_CORE": "1"})
            wait_port(yport, p, "hyper-percore (bare_hyper, runtime per core)")
            self.ports["hyper-percore"], self.pids["hyper-percore"] = yport, [p.pid]

        if "hyper-driven" in self.args.peer_list:
            yport = free_port()
            p = self.spawn("hyper-driven", [BARE_HYPER, f"127.0.0.1:{yport}", self.upstream,
                                            self.cert, self.key_file, str(workers), self.api_key],
                           env={**os.environ, "BARE_HYPER_PER_CORE": "1", "BARE_HYPER_DRIVEN": "1"})
            wait_port(yport, p, "hyper-driven (bare_hyper, upstream driven by the request)")
            self.ports["hyper-driven"], self.pids["hyper-driven"] = yport, [p.pid]

        if "hyper-pingora" in self.args.peer_list:
            yport = free_port()
            p = self.spawn("hyper-pingora", [BARE_HYPER, f"127.0.0.1:{yport}", self.upstream,
                                             self.cert, self.key_file, str(workers), self.api_key],
                           env={**os.environ, "BARE_HYPER_IN_PINGORA": "1"})
            wait_port(yport, p, "hyper-pingora (bare_hyper in pingora)")
            self.ports["hyper-pingora"], self.pids["hyper-pingora"] = yport, [p.pid]

        hport = free_port()
        hcfg = fill("haproxy.cfg", f"{w}/haproxy.cfg", {**common, "PORT": hport})
        p = self.spawn("haproxy", ["haproxy", "-db", "-f", hcfg])
        wait_port(hport, p, "haproxy")
        self.ports["haproxy"], self.pids["haproxy"] = hport, [p.pid]

        size = self.args.transfer_mib
        self.src = f"/dev/shm/mft-bench-{os.getpid()}.bin"
        with open(self.src, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size):
                f.write(block)

        for peer in self.args.peer_list:
            self.check_peer(peer)

    def url(self, peer, path):
        if peer == "direct":
            return f"http://{self.upstream}{path}"
        return f"https://127.0.0.1:{self.ports[peer]}{path}"

    def check_peer(self, peer):
        """Each proxy must really do the work it is measured for."""
        url = self.url(peer, "/api/v1/files/small")
        out, _ = curl(["-D", "-", "-o", "/dev/null", "-H", f"X-API-Key: {self.api_key}", url])
        if " 200" not in out.splitlines()[0] or "x-saw-principal: yes" not in out.lower():
            sys.exit(f"{peer}: request with key did not reach the upstream as expected:\n{out}")
        out, _ = curl(["-o", "/dev/null", "-w", "%{http_code}", url])
        if out.strip() != "401":
            sys.exit(f"{peer}: request without key got {out}, not 401")
        # Refresh pids: nginx workers are known only after start-up.
        if peer == "nginx":
            self.pids["nginx"] = children(self.pids["nginx"][0])

    # ---- scenarios ------------------------------------------------------

    def wrk(self, peer, with_key, tag):
        url = self.url(peer, "/api/v1/files/small")
        cmd = ["wrk", "-t2", "-c64", f"-d{self.args.duration}s", "--latency", url]
        if with_key:
            cmd[1:1] = ["-H", f"X-API-Key: {self.api_key}"]
        cpu0 = cpu_seconds(self.pids[peer])
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        cpu = cpu_seconds(self.pids[peer]) - cpu0
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        bad = int(bad.group(1)) if bad else 0
        if with_key and bad:
            sys.exit(f"{peer}: {bad} non-2xx responses under load (rate limit or errors)\n{out}")
        if not with_key and bad != total:
            sys.exit(f"{peer}: only {bad} of {total} keyless requests were refused\n{out}")
        self.record(peer, f"{tag}_rps", rps)
        self.record(peer, f"{tag}_p50_ms", latency(out, "50%"))
        self.record(peer, f"{tag}_p99_ms", latency(out, "99%"))
        if peer != "direct":
            self.record(peer, f"{tag}_cpu_us", cpu / total * 1e6)

    def h2load(self, peer):
        url = self.url(peer, "/api/v1/files/small")
        log = f"{self.work}/h2load-{peer}.log"
        cmd = ["h2load", "-c64", "-m10", "-t2", f"-D{self.args.duration}", "--warm-up-time=1",
               "-H", f"x-api-key: {self.api_key}", f"--log-file={log}", url]
        cpu0 = cpu_seconds(self.pids[peer])
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        cpu = cpu_seconds(self.pids[peer]) - cpu0
        m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if not m or not done or done.group(1) != done.group(2):
            sys.exit(f"{peer}: h2load failed or saw errors:\n{out}")
        durations = []
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] == "200":
                    durations.append(int(parts[2]) / 1000)
        durations.sort()
        self.record(peer, "h2_rps", float(m.group(1)))
        self.record(peer, "h2_p50_ms", durations[len(durations) // 2])
        self.record(peer, "h2_p99_ms", durations[int(len(durations) * 0.99)])
        # Warm-up requests are not in "done" but use CPU: count every logged one.
        self.record(peer, "h2_cpu_us", cpu / max(len(durations), 1) * 1e6)

    def transfer(self, peer, upload, http2=False):
        size = self.args.transfer_mib
        if upload:
            args = ["-X", "POST", "-T", self.src, self.url(peer, "/api/v1/files")]
            fmt = "%{http_code} %{speed_upload}"
        else:
            args = [self.url(peer, f"/api/v1/files/big/content?mib={size}")]
            fmt = "%{http_code} %{speed_download}"
        cpu0 = cpu_seconds(self.pids[peer])
        with PeakRss(self.pids[peer]) as rss:
            out, rc = curl(["--http2" if http2 else "--http1.1", "-o", "/dev/null", "-w", fmt,
                            "-H", f"X-API-Key: {self.api_key}", *args])
        cpu = cpu_seconds(self.pids[peer]) - cpu0
        code, speed = out.split()
        if rc != 0 or code not in ("200", "201"):
            sys.exit(f"{peer}: {'upload' if upload else 'download'} failed: {out}")
        tag = ("up2" if http2 else "up") if upload else "down"
        self.record(peer, f"{tag}_mib_s", float(speed) / (1 << 20))
        if peer != "direct":
            self.record(peer, f"{tag}_rss_mib", rss.peak)
            self.record(peer, f"{tag}_cpu_s_gib", cpu / (size / 1024))

    def h2load_upload(self, peer, http2):
        """One POST of --transfer-mib by h2load, whose client cost is nearly the same over
        HTTP/1.1 and h2 (curl's h2 costs it ~40 % more CPU per GiB, which is
        what held curl's h2 ÷ HTTP/1.1 ratio down for every peer)."""
        size = self.args.transfer_mib << 20
        cmd = ["h2load", "-n1", "-c1", "-d", self.src, "-H", f"x-api-key: {self.api_key}",
               self.url(peer, "/api/v1/files")]
        if not http2:
            cmd[1:1] = ["--h1"]
        cpu0 = cpu_seconds(self.pids[peer])
        with PeakRss(self.pids[peer]) as rss:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
        cpu = cpu_seconds(self.pids[peer]) - cpu0
        m = re.search(r"finished in ([\d.]+)(m?s)", out)
        ok = re.search(r"requests: 1 total, 1 started, 1 done, 1 succeeded", out)
        if not m or not ok:
            sys.exit(f"{peer}: h2load upload failed:\n{out}")
        secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        tag = "uph2" if http2 else "uph1"
        self.record(peer, f"{tag}_mib_s", size / secs / (1 << 20))
        if peer != "direct":
            self.record(peer, f"{tag}_cpu_s_gib", cpu / (size / (1 << 30)))
            self.record(peer, f"{tag}_rss_mib", rss.peak)

    def idle_connections(self, peer):
        n = self.args.idle
        base = rss_mib(self.pids[peer])
        held, failed, rss = asyncio.run(hold_connections(
            self.ports[peer], n, self.api_key, lambda: rss_mib(self.pids[peer])))
        self.record(peer, "idle_rss_mib", rss)
        self.record(peer, "idle_base_rss_mib", base)
        if failed:
            print(f"  {peer}: {failed} of {n} idle connections failed", file=sys.stderr)
        self.record(peer, "idle_held", held)
        if held:
            self.record(peer, "idle_kib_per_conn", (rss - base) * 1024 / held)

    # ---- driver ---------------------------------------------------------

    def run(self):
        a = self.args
        want = set(a.scenarios.split(","))
        for r in range(a.runs):
            print(f"run {r + 1}/{a.runs}", file=sys.stderr)
            for peer in ["direct", *a.peer_list]:
                print(f"  {peer}", file=sys.stderr)
                if "h1" in want:
                    self.wrk(peer, True, "h1")
                if peer != "direct" and "h2" in want:
                    self.h2load(peer)
                if peer != "direct" and "rej" in want:
                    self.wrk(peer, False, "rej")
                if "up" in want:
                    self.transfer(peer, True)
                if "down" in want:
                    self.transfer(peer, False)
                # The direct upstream speaks plain HTTP/1.1 only.
                if peer != "direct" and "up2" in want:
                    self.transfer(peer, True, http2=True)
                if "uph" in want:
                    self.h2load_upload(peer, http2=False)
                    if peer != "direct":
                        self.h2load_upload(peer, http2=True)
                        h1, h2 = (self.results[(peer, f"{t}_mib_s")][-1] for t in ("uph1", "uph2"))
                        self.record(peer, "uph_ratio", h2 / h1)
        if a.idle and "idle" in want:
            for peer in a.peer_list:
                print(f"  {peer}: {a.idle} idle TLS connections", file=sys.stderr)
                self.idle_connections(peer)
        os.unlink(self.src)


def latency(out, pct):
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def hold_connections(port, n, key, measure):
    """Opens n TLS connections, sends one keep-alive request on each, holds them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    request = (f"GET /api/v1/files/small HTTP/1.1\r\nHost: localhost\r\n"
               f"X-API-Key: {key}\r\n\r\n").encode()
    gate = asyncio.Semaphore(100)
    conns, failed = [], 0

    async def one():
        nonlocal failed
        async with gate:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 30)
                w.write(request)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                await r.readexactly(length)
                conns.append(w)
            except Exception:
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(2)
    rss = measure()
    held = len(conns)
    for w in conns:
        w.close()
    await asyncio.sleep(1)
    return held, failed, rss


def openssl_aes():
    out = subprocess.run(["openssl", "speed", "-evp", "aes-128-gcm", "-seconds", "2"],
                         capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.lower().startswith("aes-128-gcm")][-1]
    return float(line.split()[-1].rstrip("k")) * 1000 / 1e9  # GB/s, 16 KiB blocks


# ---- report -------------------------------------------------------------

ROWS = [
    ("h1_rps", "1 KiB GET, HTTP/1.1 (wrk, 64 conns): requests/s", "≥ 0.85× nginx", "max"),
    ("h1_p50_ms", "  p50 latency, ms", "", "min"),
    ("h1_p99_ms", "  p99 latency, ms", "≤ 1.2× nginx", "min"),
    ("h1_cpu_us", "  proxy CPU per request, µs", "≤ 1.2× nginx", "min"),
    ("h2_rps", "1 KiB GET, h2 (h2load, 64 conns × 10 streams): requests/s", "≥ 0.85× nginx", "max"),
    ("h2_p50_ms", "  p50 latency, ms", "", "min"),
    ("h2_p99_ms", "  p99 latency, ms", "", "min"),
    ("h2_cpu_us", "  proxy CPU per request, µs", "", "min"),
    ("rej_rps", "401 rejections (wrk, 64 conns): requests/s", "≥ 1.0× nginx", "max"),
    ("rej_cpu_us", "  proxy CPU per rejection, µs", "", "min"),
    ("up_mib_s", "upload (curl -T, HTTP/1.1): MiB/s", "≥ previous run", "max"),
    ("up_cpu_s_gib", "  proxy CPU s per GiB", "", "min"),
    ("up_rss_mib", "  proxy peak RSS, MiB", "gateway < 64", "min"),
    ("up2_mib_s", "upload (curl -T, h2): MiB/s", "≥ 0.9× HTTP/1.1 upload", "max"),
    ("up2_cpu_s_gib", "  proxy CPU s per GiB", "", "min"),
    ("up2_rss_mib", "  proxy peak RSS, MiB", "gateway < 64", "min"),
    ("uph1_mib_s", "upload (h2load -d, HTTP/1.1): MiB/s", "", "max"),
    ("uph1_cpu_s_gib", "  proxy CPU s per GiB", "", "min"),
    ("uph2_mib_s", "upload (h2load -d, h2): MiB/s", "≥ 0.9× HTTP/1.1 upload", "max"),
    ("uph2_cpu_s_gib", "  proxy CPU s per GiB", "", "min"),
    ("uph2_rss_mib", "  proxy peak RSS, MiB", "gateway < 64", "min"),
    ("uph_ratio", "  h2 ÷ HTTP/1.1 (same client, same run)", "≥ 0.9×", "max"),
    ("down_mib_s", "download (curl, HTTP/1.1): MiB/s", "≥ previous run", "max"),
    ("down_cpu_s_gib", "  proxy CPU s per GiB", "", "min"),
    ("down_rss_mib", "  proxy peak RSS, MiB", "gateway < 64", "min"),
    ("idle_base_rss_mib", "RSS before the idle connections, MiB", "", "min"),
    ("idle_rss_mib", "RSS holding the idle TLS connections, MiB", "", "min"),
    ("idle_kib_per_conn", "  KiB per idle connection (above the line before)", "gateway < 25", "min"),
]


def cell(values):
    if not values:
        return "–"
    med = statistics.median(values)
    fmt = (lambda v: f"{v:,.0f}") if med >= 100 else (lambda v: f"{v:.2f}")
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def report(bench, args):
    res = bench.results
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    versions = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
    }
    lines = [
        f"Run {now} with `benches/run --runs {args.runs} --duration {args.duration}"
        f" --transfer-mib {args.transfer_mib} --idle {args.idle}`.",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, {platform.platform()}. "
        f"Client, proxies and upstream share these CPUs; proxies run {args.workers} workers/threads. "
        f"{versions['nginx']}; {versions['haproxy']}. "
        f"Figures: median of {args.runs} runs (min–max). Idle connections: one run.",
        "",
        "| scenario | direct upstream | " + " | ".join(LABELS[p] for p in PROXIES)
        + " | gateway ÷ nginx | gateway (pingora engine) ÷ nginx | target |",
        "|---|---|" + "---|" * len(PROXIES) + "---|---|---|",
    ]

    def ratio(peer, key):
        g, n = res.get((peer, key)), res.get(("nginx", key))
        return f"{statistics.median(g) / statistics.median(n):.2f}×" if g and n and statistics.median(n) else "–"

    for key, label, target, _better in ROWS:
        cells = [cell(res.get((p, key), [])) for p in ["direct", *PROXIES]]
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio('gateway', key)}"
                     f" | {ratio('gateway-pingora', key)} | {target} |")
    held = res.get(("gateway", "idle_held"))
    if held:
        lines.append("")
        lines.append(f"Idle connections held: " + ", ".join(
            f"{p} {int(statistics.median(res[(p, 'idle_held')]))}" for p in PROXIES
            if res.get((p, "idle_held"))) + f" of {args.idle}.")
    lines.append("")
    lines.append(f"TLS limit: `openssl speed -evp aes-128-gcm` = {openssl_aes():.2f} GB/s per core (16 KiB blocks).")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- benches/run:begin -->", "<!-- benches/run:end -->"


def write_docs(table):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        text = f.read()
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text += f"\n## Side by side with nginx and haproxy\n\n{block}\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per load run")
    p.add_argument("--transfer-mib", type=int, default=1024)
    p.add_argument("--idle", type=int, default=10000, help="idle TLS connections (0 to skip)")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    p.add_argument("--scenarios", default="h1,h2,rej,up,up2,uph,down,idle",
                   help="comma list of h1,h2,rej,up,up2,uph,down,idle (default: all)")
    p.add_argument("--peers", default=",".join(PROXIES),
                   help="comma list of proxies to measure (default: " + ",".join(PROXIES) + ")")
    args = p.parse_args()
    args.peer_list = [x for x in PROXIES if x in args.peers.split(",")]
    unknown = (set(args.scenarios.split(",")) - set(p.get_default("scenarios").split(","))) | (
        set(args.peers.split(",")) - set(PROXIES))
    if unknown:
        sys.exit(f"unknown scenario or peer: {', '.join(sorted(unknown))}")
    if args.write_docs and (args.scenarios != p.get_default("scenarios")
                            or args.peer_list != PROXIES):
        sys.exit("--write-docs needs every scenario and every peer")
    bench = Bench(args)
    try:
        bench.setup()
        bench.run()
        table = report(bench, args)
    finally:
        bench.stop()
    print(table)
    out_dir = os.path.join(ROOT, "benches", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(table)
    if args.write_docs:
        write_docs(table)


if __name__ == "__main__":
    main()
