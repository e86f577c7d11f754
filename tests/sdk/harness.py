"""Shared machinery for the SDK conformance suite.

Starts real `spl serve` processes in throw-away homes, builds SDK clients and
raw httpx clients against them, captures exactly what the SDK puts on the
wire, reads SSE streams frame by frame, and checks records (shape, id, Ed25519
signature) with nothing but the SDK's own hashing and the standard library.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
from syncropel import Client, Identity
from syncropel.canonical import canonical_json
from syncropel.hashing import record_id

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "records.json"

SEVEN = ("act", "actor", "body", "clock", "data_type", "parents", "thread")
RECORD_KEYS = frozenset(
    {
        "object",
        "id",
        "act",
        "actor",
        "body",
        "clock",
        "data_type",
        "parents",
        "thread",
        "judged_by",
        "namespace",
        "sequence",
        "created_at",
        "sig",
        "signer",
    }
)
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX128 = re.compile(r"^[0-9a-f]{128}$")

STARTUP_TIMEOUT_S = float(os.environ.get("SPL_SDK_STARTUP_TIMEOUT", "30"))
CLI_TIMEOUT_S = 60.0
# The one browser origin the stewards under test allow (CORS is off for any other).
CORS_ORIGIN = "https://app.example"


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def spl_bin() -> Path:
    raw = os.environ.get("SPL_BIN", "target/debug/spl")
    p = Path(raw)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def steward_bin() -> Path:
    """The hosted `steward` binary: STEWARD_BIN, else next to the `spl` binary."""
    raw = os.environ.get("STEWARD_BIN")
    if raw:
        p = Path(raw)
        return p if p.is_absolute() else REPO_ROOT / p
    return spl_bin().parent / "steward"


def new_thread() -> str:
    """A fresh canonical thread id (`th_` + 64 hex), like `Client.intend`."""
    return "th_" + secrets.token_hex(32)


def new_actor(label: str = "t") -> str:
    return f"did:sync:user:{label}-{secrets.token_hex(4)}"


def word(prefix: str = "w") -> str:
    """A made-up search word: letters only, unique per call."""
    alphabet = "bcdfghjklmnpqrstvwxz"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(10))


def rid7(rec: dict[str, Any]) -> str:
    """Record id the way the SDK defines the spec-compliant id (7 fields)."""
    return record_id({k: rec[k] for k in SEVEN}, fields=7)


def rid6(rec: dict[str, Any]) -> str:
    """The SDK's legacy 6-field default, which a server must never assign."""
    return record_id({k: rec[k] for k in SEVEN if k != "data_type"}, fields=6)


def arun(coro):
    """Run one coroutine on a fresh event loop (no pytest-asyncio needed)."""
    return asyncio.run(coro)


async def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an ApiError envelope (§10.4) with the given status and code."""
    assert resp.status_code == status, (
        f"expected HTTP {status} {code}, got {resp.status_code}: {resp.text[:500]}"
    )
    try:
        body = resp.json()
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"error body is not JSON: {resp.text[:300]!r}") from e
    assert isinstance(body, dict), body
    for member in ("object", "type", "code", "message"):
        assert member in body, f"error envelope lacks {member!r}: {body}"
    assert body["object"] == "error", body
    assert body["code"] == code, f"expected code {code}, got {body['code']}: {body}"
    assert isinstance(body["message"], str) and body["message"], body
    expected_type = ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    assert body["type"] == expected_type, f"type for {status} should be {expected_type}: {body}"
    # §10.4: never an `error`/`detail` member that disagrees with code/message.
    if "error" in body:
        assert body["error"] == body["code"], body
    return body


def assert_record(rec: dict[str, Any], *, sent: dict[str, Any] | None = None) -> None:
    """A full stored record (§2.1) whose id re-derives from its own 7 fields."""
    assert isinstance(rec, dict), rec
    missing = RECORD_KEYS - rec.keys()
    assert not missing, f"record lacks {sorted(missing)}: {rec}"
    assert rec["object"] == "record", rec
    assert isinstance(rec["id"], str) and HEX64.match(rec["id"]), rec["id"]
    assert rid7(rec) == rec["id"], (
        f"id {rec['id']} does not re-derive from the returned fields "
        f"(canonical: {canonical_json({k: rec[k] for k in SEVEN})})"
    )
    assert isinstance(rec["sequence"], int) and not isinstance(rec["sequence"], bool)
    assert rec["sequence"] >= 1
    assert isinstance(rec["created_at"], int) and not isinstance(rec["created_at"], bool)
    assert abs(rec["created_at"] - time.time()) < 24 * 3600, (
        f"created_at should be unix seconds: {rec['created_at']}"
    )
    assert isinstance(rec["namespace"], str) and rec["namespace"], rec
    assert rec["parents"] == sorted(rec["parents"]), rec["parents"]
    assert isinstance(rec["sig"], str) and HEX128.match(rec["sig"]), (
        f"sig must be 128 lowercase hex: {rec['sig']!r}"
    )
    if not rec["actor"].startswith("did:key:"):
        assert isinstance(rec["signer"], str) and rec["signer"].startswith("did:key:z6Mk"), (
            rec["signer"]
        )
    if sent is not None:
        for k in SEVEN:
            if k in sent:
                want = sorted(sent[k]) if k == "parents" else sent[k]
                assert rec[k] == want, f"{k}: sent {want!r}, stored {rec[k]!r}"
        assert rec.get("judged_by") == sent.get("judged_by"), rec


# ---------------------------------------------------------------------------
# exact-literal JSON re-serialisation (vectors hold numbers beyond 64 bits)
# ---------------------------------------------------------------------------


class _Literal(str):
    """A JSON number token, kept exactly as written in the source text."""


class _Pairs(list):
    """A JSON object as its list of (key, value) pairs, in source order."""


def load_literal(text: str) -> Any:
    return json.loads(
        text,
        object_pairs_hook=_Pairs,
        parse_float=_Literal,
        parse_int=_Literal,
        parse_constant=_Literal,
    )


def dump_literal(value: Any) -> str:
    """Serialise a `load_literal` tree back to JSON keeping number tokens,
    key order and (non-)sortedness exactly as in the source."""
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, _Pairs):
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + dump_literal(v) for k, v in value
        ) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_literal(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def load_vectors() -> tuple[dict[str, Any], dict[str, str]]:
    """The vectors file parsed twice: as Python values, and each record's
    `input` as the exact JSON text to put on the wire."""
    text = VECTORS_PATH.read_text(encoding="utf-8")
    parsed = json.loads(text)
    lit = load_literal(text)
    records_lit = dict(lit)["records"]
    raw_inputs: dict[str, str] = {}
    for rec in records_lit:
        rd = dict(rec)
        raw_inputs[str(rd["name"])] = dump_literal(rd["input"])
    return parsed, raw_inputs


# ---------------------------------------------------------------------------
# the steward process
# ---------------------------------------------------------------------------


class StewardError(RuntimeError):
    pass


LIVE_STEWARDS: list["Steward"] = []


@dataclass
class Steward:
    home: Path
    heartbeat_secs: int = 2
    bootstrap: bool = True
    url: str = ""
    token: str = ""
    proc: subprocess.Popen | None = None
    log_path: Path = field(default_factory=Path)
    steward_json: dict[str, Any] = field(default_factory=dict)
    _tmp_owner: bool = True

    # -- lifecycle --------------------------------------------------------

    @classmethod
    def start(cls, *, bootstrap: bool = True, heartbeat_secs: int = 2) -> "Steward":
        binary = spl_bin()
        if not binary.exists():
            raise StewardError(
                f"spl binary not found at {binary}; build it (`cargo build -p spl`) or set SPL_BIN"
            )
        home = Path(tempfile.mkdtemp(prefix="spl-sdk-home-"))
        s = cls(home=home, heartbeat_secs=heartbeat_secs, bootstrap=bootstrap)
        s.log_path = home.parent / (home.name + ".serve.log")
        try:
            s._init()
            if bootstrap:
                s.token = s._bootstrap()
            s._serve()
        except BaseException:
            s.stop()
            raise
        LIVE_STEWARDS.append(s)
        return s

    def cli(self, *args: str, check: bool = True, with_endpoint: bool = False) -> subprocess.CompletedProcess:
        argv = [str(spl_bin()), "--home", str(self.home)]
        if with_endpoint:
            argv += ["--endpoint", self.url, "--token", self.token]
        argv += list(args)
        cp = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            cwd=str(self.home),
        )
        if check and cp.returncode != 0:
            raise StewardError(
                f"`{' '.join(argv[1:])}` exited {cp.returncode}\n"
                f"stdout: {cp.stdout[-2000:]}\nstderr: {cp.stderr[-2000:]}"
            )
        return cp

    def _init(self) -> None:
        self.cli("init")

    def _bootstrap(self) -> str:
        cp = self.cli(
            "service-account", "create", "--bootstrap", "--name", "admin",
            "--scopes", "admin", "--with-token",
        )
        return _single_token(cp, "bootstrap service-account create")

    def mint(self, name: str, scopes: str, actors: str | None = None) -> str:
        """Mint another service account + token through the running server."""
        extra = ["--actors", actors] if actors else []
        cp = self.cli(
            "service-account", "create", "--name", name, "--scopes", scopes, *extra, "--with-token",
            with_endpoint=True,
        )
        return _single_token(cp, f"service-account create --name {name}")

    def revoke(self, token_id: str) -> None:
        """Revoke a token through the running server."""
        self.cli("token", "revoke", token_id, with_endpoint=True)

    def _serve(self) -> None:
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [
                    str(spl_bin()), "--home", str(self.home), "serve",
                    "--port", "0", "--heartbeat-secs", str(self.heartbeat_secs),
                    "--cors-origin", CORS_ORIGIN,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=str(self.home),
            )
        finally:
            log.close()
        sj = self.home / "steward.json"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_err = "steward.json never appeared"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StewardError(
                    f"`spl serve` exited with {self.proc.returncode} during startup\n{self.log_tail()}"
                )
            if sj.exists():
                try:
                    self.steward_json = json.loads(sj.read_text())
                    self.url = str(self.steward_json["url"]).rstrip("/")
                    r = httpx.get(self.url + "/health", timeout=2.0)
                    if r.status_code == 200:
                        return
                    last_err = f"/health answered {r.status_code}"
                except (ValueError, KeyError, httpx.HTTPError, OSError) as e:
                    last_err = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        raise StewardError(f"`spl serve` not ready after {STARTUP_TIMEOUT_S}s ({last_err})\n{self.log_tail()}")

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def stop(self) -> None:
        self.terminate()
        if self in LIVE_STEWARDS:
            LIVE_STEWARDS.remove(self)
        if not os.environ.get("SPL_SDK_KEEP_HOMES"):
            shutil.rmtree(self.home, ignore_errors=True)
            try:
                self.log_path.unlink()
            except OSError:
                pass

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- clients ----------------------------------------------------------

    def http(self, token: str | None = "admin", *, bearer: bool = False, timeout: float = 30.0) -> httpx.Client:
        """Raw httpx client. token="admin" uses the bootstrap token; None sends none."""
        tok = self.token if token == "admin" else token
        headers: dict[str, str] = {}
        if tok:
            if bearer:
                headers["authorization"] = f"Bearer {tok}"
            else:
                headers["x-api-key"] = tok
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def sdk(self, actor: str = "did:sync:user:alice", token: str | None = "admin", **kw: Any) -> Client:
        tok = self.token if token == "admin" else token
        kw.setdefault("max_retries", 0)
        return Client(endpoint=self.url, identity=Identity.static(actor), api_key=tok, **kw)

    # -- raw conveniences -------------------------------------------------

    def post_record(self, envelope: dict[str, Any] | str | bytes, token: str | None = "admin") -> httpx.Response:
        with self.http(token) as h:
            if isinstance(envelope, dict):
                return h.post("/v1/records", json=envelope)
            content = envelope.encode("utf-8") if isinstance(envelope, str) else envelope
            return h.post("/v1/records", content=content, headers={"content-type": "application/json"})

    def get_record(self, rid: str) -> dict[str, Any]:
        with self.http() as h:
            r = h.get(f"/v1/records/{rid}")
        assert r.status_code == 200, f"GET /v1/records/{rid} -> {r.status_code}: {r.text[:300]}"
        return r.json()

    def thread_records(self, thread: str) -> list[dict[str, Any]]:
        with self.http() as h:
            r = h.get(f"/v1/threads/{thread}/records", params={"limit": 1000})
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("data"), list), body
        return body["data"]

    def count_all(self) -> int:
        """Total records visible tenant-wide, following list cursors, but for the refusal records
        on th_audit_security: a refused request leaves one there by design (§13.3)."""
        total = 0
        cursor = None
        with self.http() as h:
            for _ in range(10_000):
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                r = h.get("/v1/records", params=params)
                assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
                body = r.json()
                total += sum(1 for r in body["data"] if r.get("thread") != "th_audit_security")
                cursor = body.get("next_cursor")
                if not body.get("has_more") or not cursor:
                    return total
        raise AssertionError("GET /v1/records paging never ended")


PLATFORM_HOST = "steward.test"
JWT_ISSUER = "sdk-suite-platform"
JWT_AUDIENCE = "syncropel-steward"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def platform_jwt(secret: str, account: str) -> str:
    """An HS256 JWT as the signup platform signs it (standard library only)."""
    import hmac

    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": account, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + 600}
    payload = _b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _psql(database_url: str, sql: str) -> None:
    """Runs one statement on the server of DATABASE_URL (through its `test` database)."""
    subprocess.run(
        ["psql", database_url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True, capture_output=True, timeout=60,
    )


@dataclass
class HostedSteward(Steward):
    """A tenant of the hosted `steward` binary over a Postgres database of its own, provisioned
    through `POST /provision` and addressed by path prefix, so `url` is `http://…/t/<label>`
    and every route and SDK call works against it exactly as against `spl serve`."""

    database: str = ""
    admin_url: str = ""

    @classmethod
    def start(cls, *, bootstrap: bool = True, heartbeat_secs: int = 2) -> "HostedSteward":
        binary = steward_bin()
        if not binary.exists():
            raise StewardError(f"steward binary not found at {binary}; build it or set STEWARD_BIN")
        home = Path(tempfile.mkdtemp(prefix="spl-sdk-hosted-"))
        s = cls(home=home, heartbeat_secs=heartbeat_secs, bootstrap=bootstrap)
        s.log_path = home / "steward.log"
        s.admin_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
        s.database = f"sdk_hosted_{int(time.time())}_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            _psql(s.admin_url, f"CREATE DATABASE {s.database}")
            s._serve_hosted(binary)
        except BaseException:
            s.stop()
            raise
        LIVE_STEWARDS.append(s)
        return s

    def _serve_hosted(self, binary: Path) -> None:
        base, _, _ = self.admin_url.rpartition("/")
        secret = secrets.token_hex(32)
        env = dict(
            os.environ,
            DATABASE_URL=f"{base}/{self.database}",
            STEWARD_KEK=secrets.token_hex(32),
            STEWARD_JWT_SECRET=secret,
            RUST_LOG="info",
        )
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [
                    str(binary), "--bind", "127.0.0.1:0", "--base-domain", PLATFORM_HOST,
                    "--path-prefix", "/t", "--public-scheme", "http",
                    "--jwt-issuer", JWT_ISSUER, "--jwt-audience", JWT_AUDIENCE,
                    "--rate-limit-per-address", "0", "--rate-limit-per-token", "0",
                    "--heartbeat", f"{self.heartbeat_secs}s",
                    "--cors-origin", CORS_ORIGIN,
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        origin = ""
        while time.monotonic() < deadline and not origin:
            if self.proc.poll() is not None:
                raise StewardError(f"`steward` exited with {self.proc.returncode}\n{self.log_tail()}")
            m = re.search(r"addr=(\S+)", self.log_path.read_text(errors="replace"))
            if m:
                origin = f"http://{m.group(1)}"
            time.sleep(0.05)
        if not origin:
            raise StewardError(f"`steward` did not listen within {STARTUP_TIMEOUT_S}s\n{self.log_tail()}")
        label = "sdk-" + secrets.token_hex(4)
        # The platform picks it; 32 alphanumerics give the bearer the shape of a minted token.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        bootstrap_token = "".join(secrets.choice(alphabet) for _ in range(32))
        r = httpx.post(
            origin + "/provision",
            headers={
                "host": PLATFORM_HOST,
                "authorization": f"Bearer {platform_jwt(secret, 'sdk-suite')}",
                "idempotency-key": label,
            },
            json={"label": label, "bootstrap_token": bootstrap_token},
            timeout=30.0,
        )
        if r.status_code != 202:
            raise StewardError(f"POST /provision -> {r.status_code}: {r.text[:500]}")
        self.url = f"{origin}/t/{label}"
        self.token = f"spl_prod_sa-bootstrap-env_{bootstrap_token}"

    def cli(self, *args: str, check: bool = True, with_endpoint: bool = False) -> subprocess.CompletedProcess:
        raise StewardError("a hosted tenant has no home for `spl` to work in")

    def mint(self, name: str, scopes: str, actors: str | None = None) -> str:
        """Another service account + token, through the tenant's admin API."""
        with self.http(bearer=True) as h:
            body = {"name": name, "scopes": scopes.split(",")}
            if actors:
                body["allowed_actors"] = actors.split(",")
            r = h.post("/v1/service-accounts", json=body)
            assert r.status_code == 201, f"{r.status_code}: {r.text[:300]}"
            r = h.post(f"/v1/service-accounts/{r.json()['id']}/tokens", json={})
            assert r.status_code == 201, f"{r.status_code}: {r.text[:300]}"
            return r.json()["token"]

    def revoke(self, token_id: str) -> None:
        with self.http(bearer=True) as h:
            r = h.delete(f"/v1/tokens/{token_id}")
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"

    def stop(self) -> None:
        super().stop()
        if self.database:
            try:
                _psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            except (subprocess.SubprocessError, OSError):
                pass


def hosted_target() -> bool:
    return os.environ.get("SPL_SDK_TARGET") == "hosted"


def steward_class() -> type[Steward]:
    """`SPL_SDK_TARGET=hosted` runs the suite against a hosted tenant instead of `spl serve`."""
    return HostedSteward if hosted_target() else Steward


def _single_token(cp: subprocess.CompletedProcess, what: str) -> str:
    out = cp.stdout.strip()
    if not out or len(out.split()) != 1:
        raise StewardError(f"{what}: expected the token alone on stdout, got {cp.stdout!r} (stderr {cp.stderr[-500:]!r})")
    return out


# ---------------------------------------------------------------------------
# capturing what the SDK actually sends
# ---------------------------------------------------------------------------


def _api_path(url: httpx.URL) -> str:
    """The API path of a request, without the prefix a hosted tenant's base URL adds."""
    path = url.path
    at = path.find("/v1/")
    return path[at:] if at > 0 else path


class Capture:
    """httpx event hooks on an SDK client: every request body and status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.statuses: list[tuple[str, str, int]] = []

    def attach(self, client: Client) -> "Capture":
        async def on_request(req: httpx.Request) -> None:
            self.requests.append((req.method, _api_path(req.url), req.content))

        async def on_response(resp: httpx.Response) -> None:
            self.statuses.append((resp.request.method, _api_path(resp.request.url), resp.status_code))

        def on_request_sync(req: httpx.Request) -> None:
            self.requests.append((req.method, _api_path(req.url), req.content))

        def on_response_sync(resp: httpx.Response) -> None:
            self.statuses.append((resp.request.method, _api_path(resp.request.url), resp.status_code))

        client._http.event_hooks = {"request": [on_request], "response": [on_response]}
        sync_http = client._get_sync_http()
        sync_http.event_hooks = {"request": [on_request_sync], "response": [on_response_sync]}
        return self

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        return [json.loads(c) for m, p, c in self.requests if m == "POST" and p == "/v1/records"]

    @property
    def emit_statuses(self) -> list[int]:
        return [s for m, p, s in self.statuses if m == "POST" and p == "/v1/records"]

    def last_envelope(self) -> dict[str, Any]:
        envs = self.envelopes
        assert envs, "the SDK sent no POST /v1/records"
        return envs[-1]


# ---------------------------------------------------------------------------
# SSE, read frame by frame
# ---------------------------------------------------------------------------


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: str | None
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.data) if self.data is not None else None


def parse_frame(text: str, at: float) -> Frame | None:
    event = None
    fid = None
    data: list[str] = []
    for line in text.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "id":
            fid = value
        elif name == "data":
            data.append(value)
    if event is None and fid is None and not data:
        return None
    return Frame(event=event, id=fid, data="\n".join(data) if data else None, at=at)


class SseStream:
    """An open `GET …/watch` response whose frames arrive on a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, connect_timeout: float = 10.0):
        self.url = url
        self.headers = {"accept": "text/event-stream", "cache-control": "no-cache", **(headers or {})}
        self.connect_timeout = connect_timeout
        self.frames: list[Frame] = []
        self.eof = False
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self._queue: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> "SseStream":
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=self.connect_timeout))
        self._cm = self._client.stream("GET", self.url, headers=self.headers)
        try:
            self._resp = await asyncio.wait_for(self._cm.__aenter__(), self.connect_timeout)
        except BaseException:
            await self._client.aclose()
            raise
        self.status = self._resp.status_code
        self.response_headers = self._resp.headers
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        buf = ""
        try:
            async for chunk in self._resp.aiter_text():
                buf = (buf + chunk).replace("\r\n", "\n")
                while "\n\n" in buf:
                    text, buf = buf.split("\n\n", 1)
                    fr = parse_frame(text, time.monotonic())
                    if fr is not None:
                        self.frames.append(fr)
                        await self._queue.put(fr)
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.eof = True
            await self._queue.put(None)

    async def next(self, timeout: float) -> Frame | None:
        """Next frame, or None at end of stream; raises TimeoutError."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def wait_for(self, pred: Callable[[Frame], bool], timeout: float) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching SSE frame")
            fr = await self.next(left)
            if fr is None:
                raise EOFError("SSE stream ended before a matching frame")
            if pred(fr):
                return fr

    async def records(self, n: int, timeout: float) -> list[Frame]:
        """The next n record.created frames (other events are skipped)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                fr = await self.wait_for(is_record_frame, max(left, 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"got {len(out)} of {n} record.created frames in {timeout}s; "
                    f"all frames so far: {[(f.event, f.id) for f in self.frames]}"
                )
            out.append(fr)
        return out

    async def quiet_for(self, seconds: float) -> list[Frame]:
        """Collect record frames arriving in the next `seconds` (expect none)."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                fr = await self.next(left)
            except (TimeoutError, asyncio.TimeoutError):
                return got
            if fr is None:
                return got
            if is_record_frame(fr):
                got.append(fr)

    async def __aexit__(self, *exc: Any) -> None:
        self._task.cancel()
        try:
            await self._task
        except BaseException:  # noqa: BLE001
            pass
        try:
            await asyncio.wait_for(self._cm.__aexit__(None, None, None), 5)
        except BaseException:  # noqa: BLE001
            pass
        await self._client.aclose()


def is_record_frame(fr: Frame) -> bool:
    return fr.event == "record.created"


def watch_url(steward: Steward, thread: str, since_clock: int | None = None) -> str:
    u = f"{steward.url}/v1/threads/{thread}/watch"
    if since_clock is not None:
        u += f"?since_clock={since_clock}"
    return u


# ---------------------------------------------------------------------------
# Ed25519 verification (RFC 8032 §5.1.7), pure Python, and did:key decoding
# ---------------------------------------------------------------------------

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _add(P1, P2):
    A = (P1[1] - P1[0]) * (P2[1] - P2[0]) % _P
    B = (P1[1] + P1[0]) * (P2[1] + P2[0]) % _P
    C = 2 * P1[3] * P2[3] * _D % _P
    Dd = 2 * P1[2] * P2[2] % _P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % _P, G * H % _P, F * G % _P, E * H % _P)


def _mul(s: int, P1):
    R = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            R = _add(R, P1)
        P1 = _add(P1, P1)
        s >>= 1
    return R


def _eq(P1, P2) -> bool:
    return (P1[0] * P2[2] - P2[0] * P1[2]) % _P == 0 and (P1[1] * P2[2] - P2[1] * P1[2]) % _P == 0


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _decompress(b: bytes):
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def ed25519_verify(public: bytes, msg: bytes, sig: bytes) -> bool:
    if len(public) != 32 or len(sig) != 64:
        return False
    A = _decompress(public)
    R = _decompress(sig[:32])
    if A is None or R is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % _Q
    return _eq(_mul(s, _G), _add(R, _mul(h, A)))


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(s: str) -> bytes:
    n = 0
    for ch in s:
        n = n * 58 + _B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(s) - len(s.lstrip("1"))
    return b"\x00" * pad + body


def did_key_public(did: str) -> bytes:
    assert did.startswith("did:key:z"), did
    raw = b58decode(did[len("did:key:z"):])
    assert len(raw) == 34 and raw[:2] == b"\xed\x01", f"not an Ed25519 did:key: {did}"
    return raw[2:]


def verify_record_signature(rec: dict[str, Any]) -> bool:
    signer = rec.get("signer") or rec["actor"]
    pub = did_key_public(signer)
    msg = canonical_json({k: rec[k] for k in SEVEN}).encode("utf-8")
    return ed25519_verify(pub, msg, bytes.fromhex(rec["sig"]))


def chunks(seq: Iterable[Any], n: int) -> list[list[Any]]:
    seq = list(seq)
    return [seq[i : i + n] for i in range(0, len(seq), n)]
