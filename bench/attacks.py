#!/usr/bin/env python3
"""Resource attacks on one hosted replica, and what an honest tenant sees meanwhile.

    .venv/bin/python bench/attacks.py [--steward target/release/steward] [--big-records 1100]
                                      [--attacks quiet,slowloris]   # some of them only
                                      [--fd-limit 1024]   # the replica's open-file limit

Starts the hosted `steward` (release build) on a Postgres database of its own (DATABASE_URL's
server), provisions an attacker tenant and an honest one, and fills the attacker's `th_big`
with records of 900 KB. Then, one at a time, each attack of the security review runs for a few
seconds while the honest tenant reads a small thread in a loop:

  pages       three concurrent `GET /v1/records?thread=th_big&limit=1000`, over and over
  feed        three concurrent `GET /v1/sync/changes?thread=th_big&limit=10000`
  sorted      three concurrent sorted rich queries over the whole tenant
  like        one `$like` query per core and more: 900 KB text, the longest pattern
  watchers    three watches that never read while the attacker writes 100 more big records
  slowloris   up to 2,000 connections from one address that send their headers a byte a second
              (the honest tenant connects from 127.0.0.2, another address)

It prints, per attack, the replica's resident memory before it (after 5 s of rest) and at its
peak, the most connections it held open (both sampled every 50 ms from /proc), and the honest
tenant's request count, p50 and p99 (each of its requests on a new connection), with a quiet run first as the baseline, as a Markdown table.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_HOST = "platform.bench.test"
ISSUER, AUDIENCE = "bench", "syncropel"
BIG = "x" * 900_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def platform_jwt(secret: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": "bench", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
    payload = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


class Replica:
    def __init__(self, binary: Path, admin_url: str, fd_limit: int | None = None):
        self.admin_url = admin_url
        self.database = f"bench_attacks_{os.getpid()}_{secrets.token_hex(3)}"
        psql(admin_url, f"CREATE DATABASE {self.database}")
        base = admin_url.rpartition("/")[0]
        self.secret = secrets.token_hex(32)
        self.log = tempfile.NamedTemporaryFile(prefix="steward-", suffix=".log", delete=False)
        env = dict(os.environ, DATABASE_URL=f"{base}/{self.database}", STEWARD_KEK=secrets.token_hex(32),
                   STEWARD_JWT_SECRET=self.secret, STEWARD_RATE_LIMIT_PER_TENANT="0",
                   RUST_LOG="warn,syncropel_steward=info")
        self.proc = subprocess.Popen(
            [str(binary), "--bind", "127.0.0.1:0", "--base-domain", PLATFORM_HOST, "--path-prefix", "/t",
             "--public-scheme", "http", "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
             "--rate-limit-per-address", "0", "--rate-limit-per-token", "0", "--tenant-limit", "10"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit)))
            if fd_limit else None)
        deadline = time.monotonic() + 30
        self.origin = ""
        while not self.origin:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"steward did not start: {Path(self.log.name).read_text()[-2000:]}")
            m = re.search(r"addr=(\S+)", Path(self.log.name).read_text(errors="replace"))
            if m:
                self.origin = f"http://{m.group(1)}"
            time.sleep(0.05)

    def tenant(self, label: str) -> tuple[str, str]:
        bootstrap = secrets.token_hex(16)
        r = httpx.post(self.origin + "/provision", json={"label": label, "bootstrap_token": bootstrap},
                       headers={"host": PLATFORM_HOST, "authorization": f"Bearer {platform_jwt(self.secret)}",
                                "idempotency-key": label}, timeout=30)
        r.raise_for_status()
        return f"{self.origin}/t/{label}", f"spl_prod_sa-bootstrap-env_{bootstrap}"

    def sockets(self) -> int:
        """Sockets the replica holds open (its listeners' and connections')."""
        fds = Path(f"/proc/{self.proc.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:
                pass
        return count

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def envelope(thread: str, clock: int, body: dict) -> dict:
    return {"act": "DO", "actor": "did:example:bench", "thread": thread, "clock": clock,
            "data_type": "SCALAR", "parents": [], "body": body}


def write_many(url: str, token: str, thread: str, first: int, count: int, body: dict, workers: int = 8) -> None:
    def work(offset: int) -> None:
        with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=60) as h:
            for clock in range(first + offset, first + count, workers):
                r = h.post(url + "/v1/records", json=envelope(thread, clock, body))
                assert r.status_code in (200, 201), r.text[:300]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Honest:
    """Reads a small thread in a loop and keeps each request's latency."""

    def __init__(self, url: str, token: str):
        # From another loopback address than the attackers', and each request on a connection
        # of its own: the honest tenant stands for clients that keep arriving.
        transport = httpx.HTTPTransport(local_address="127.0.0.2",
                                        limits=httpx.Limits(max_keepalive_connections=0))
        self.client = httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30,
                                   transport=transport)
        self.url = url

    def run(self, stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                r = self.client.get(self.url + "/v1/records", params={"thread": "th_small", "limit": 10})
                if r.status_code != 200:
                    errors.append(str(r.status_code))
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
            latencies.append((time.perf_counter() - started) * 1000)


def repeat(seconds: float, request) -> list[threading.Thread]:
    """Three attackers repeating `request(client)` for `seconds`."""
    deadline = time.monotonic() + seconds

    def attacker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < deadline:
                try:
                    request(client)
                except httpx.HTTPError:
                    pass
    return [threading.Thread(target=attacker) for _ in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steward", default=str(ROOT / "target/release/steward"))
    parser.add_argument("--big-records", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--fd-limit", type=int, help="the replica's open-file limit (as a service manager sets it)")
    parser.add_argument("--attacks", help="comma-separated names (first words) of the attacks to run; all by default")
    args = parser.parse_args()
    admin_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    replica = Replica(Path(args.steward), admin_url, args.fd_limit)
    try:
        run(replica, args)
    finally:
        replica.stop()


def run(replica: Replica, args) -> None:
    attacker_url, attacker = replica.tenant("attacker")
    honest_url, honest_token = replica.tenant("honest")
    auth = {"authorization": f"Bearer {attacker}"}
    write_many(honest_url, honest_token, "th_small", 1, 50, {"n": 1})
    print(f"[attacks] writing {args.big_records} records of 900 KB", file=sys.stderr)
    write_many(attacker_url, attacker, "th_big", 1, args.big_records, {"s": BIG}, workers=4)
    honest = Honest(honest_url, honest_token)

    attacks = {
        "quiet (baseline)": lambda seconds: [],
        "pages": lambda seconds: repeat(seconds, lambda c: c.get(
            attacker_url + "/v1/records", params={"thread": "th_big", "limit": 1000}, headers=auth).content),
        "feed": lambda seconds: repeat(seconds, lambda c: c.get(
            attacker_url + "/v1/sync/changes", params={"thread": "th_big", "limit": 10000}, headers=auth).content),
        "sorted": lambda seconds: repeat(seconds, lambda c: c.post(
            attacker_url + "/v1/records/query", json={"filter": {}, "sort": {"clock": -1}, "limit": 1000},
            headers=auth).content),
        "like": lambda seconds: repeat(seconds, lambda c: c.post(
            attacker_url + "/v1/records/query",
            json={"filter": {"body.s": {"$like": "%" + "x" * 254 + "b"}}}, headers=auth).content),
        "watchers": watchers(attacker_url, attacker, args.big_records),
        "slowloris": slowloris(attacker_url),
    }
    if args.attacks:
        wanted = args.attacks.split(",")
        attacks = {name: start for name, start in attacks.items() if name.split()[0] in wanted}
    rows = []
    for name, start in attacks.items():
        stop = threading.Event()
        latencies: list[float] = []
        errors: list[str] = []
        reader = threading.Thread(target=honest.run, args=(stop, latencies, errors))
        # Memory freed by the attack before goes back to the system first.
        time.sleep(5)
        before = replica.rss_kib()
        peak = before
        most_sockets = replica.sockets()
        workers = start(args.seconds)
        reader.start()
        for w in workers:
            w.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline or any(w.is_alive() for w in workers):
            peak = max(peak, replica.rss_kib())
            most_sockets = max(most_sockets, replica.sockets())
            time.sleep(0.05)
        stop.set()
        reader.join()
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
        rows.append((name, before / 1024, peak / 1024, most_sockets, len(latencies),
                     statistics.median(latencies), p99, len(errors)))
        print(f"[attacks] {name}: peak {peak / 1024:.0f} MiB, honest p99 {p99:.1f} ms", file=sys.stderr)
    print("| Attack | replica RSS before (MiB) | peak RSS (MiB) | most sockets held | honest requests | honest p50 ms | honest p99 ms | honest errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, before, peak, sockets, count, p50, p99, errors in rows:
        print(f"| {name} | {before:.0f} | {peak:.0f} | {sockets} | {count} | {p50:.1f} | {p99:.1f} | {errors} |")


def watchers(url: str, token: str, written: int):
    """Three watches that never read, while 100 more big records are written."""
    def start(seconds: float) -> list[threading.Thread]:
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        path = "/" + url.split("//", 1)[1].split("/", 1)[1] + "/v1/threads/th_big/watch"
        sockets = []
        for _ in range(3):
            s = socket.create_connection((host, int(port)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                      f"Accept: text/event-stream\r\n\r\n".encode())
            sockets.append(s)

        def write() -> None:
            write_many(url, token, "th_big", written + 1, 100, {"s": BIG}, workers=4)
            time.sleep(1)
            for s in sockets:
                s.close()
        return [threading.Thread(target=write)]
    return start


def slowloris(url: str):
    """Up to 2,000 connections from 127.0.0.1 that never finish their headers: each sends a
    header line a second, and one the replica closed is opened again."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")

    def start(seconds: float) -> list[threading.Thread]:
        def attack() -> None:
            deadline = time.monotonic() + seconds
            held: list[socket.socket] = []
            while time.monotonic() < deadline:
                while len(held) < 2000 and time.monotonic() < deadline:
                    try:
                        s = socket.create_connection((host, int(port)), timeout=1)
                        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode())
                        held.append(s)
                    except OSError:
                        break
                alive = []
                for s in held:
                    try:
                        s.sendall(b"X-Slow: a\r\n")
                        alive.append(s)
                    except OSError:
                        s.close()
                held = alive
                time.sleep(1)
            for s in held:
                s.close()
        return [threading.Thread(target=attack)]
    return start


if __name__ == "__main__":
    main()
