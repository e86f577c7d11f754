"""The README's examples, run as written against a real steward.

The "First steps" shell block runs in bash with the built `spl` first on PATH and a home of its
own; then the "From Python" block runs with the official SDK in the environment that shell left,
as the README tells the reader to. The one line the test leaves out is the one that installs
`spl` (`cargo install`): the test uses the binary already built.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from syncropel.hashing import record_id

from docblocks import README, block_under, spl_bin

SEVEN = ("act", "actor", "body", "clock", "data_type", "parents", "thread")
# The thread the README's examples write to.
THREAD = "release-1.2"


def _installs(line: str) -> bool:
    """A line that installs or builds `spl`: the test runs the binary already built instead."""
    words = shlex.split(line, comments=True)
    return words[:2] in (["cargo", "install"], ["cargo", "build"])


def _stop(home: Path, env: dict[str, str]) -> None:
    """Ends the daemon the block started: `spl stop`, and SIGKILL if that did not do it."""
    info = home / "steward.json"
    pid = None
    if info.exists():
        try:
            pid = int(json.loads(info.read_text())["pid"])
        except (ValueError, KeyError, OSError):
            pid = None
    subprocess.run([str(spl_bin()), "stop"], env=env, capture_output=True, timeout=30)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid else []
    except OSError:
        cmdline = []  # gone
    if b"serve" in cmdline:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def reader():
    """A reader's shell: the built `spl` first on PATH, a home of its own, nothing of the caller's
    `spl` settings. The steward takes a free port (`SPL_PORT=0`), so the test never meets another
    steward on 9100, and does not use mDNS, so no multicast leaves the machine."""
    assert spl_bin().exists(), f"{spl_bin()} is not built (cargo build -p spl)"
    root = Path(tempfile.mkdtemp(prefix="docs-readme-"))
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPL_", "SYNCROPEL_"))}
    env.update(
        PATH=f"{spl_bin().parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(root),
        SYNCROPEL_HOME=str(home),
        SPL_PORT="0",
        SPL_NO_MDNS="true",
    )
    try:
        yield root, home, env
    finally:
        _stop(home, env)
        log = home / "steward.log"
        if log.exists():
            print(f"--- steward.log\n{log.read_text(errors='replace')[-4000:]}")
        shutil.rmtree(root, ignore_errors=True)


def _run_shell_block(root: Path, env: dict[str, str]) -> dict[str, str]:
    """Runs the README's first-steps block; the environment it leaves behind."""
    block = block_under(README, "First steps", "sh")
    lines = [line for line in block.text.split("\n") if not _installs(line)]
    assert len(lines) == len(block.text.split("\n")) - 1, "expected exactly one install line"
    env_out = root / "env.json"
    script = "\n".join(
        [
            "set -euo pipefail",
            *lines,
            # Not part of the README: hands the variables the block exported to the test.
            f"{shlex.quote(sys.executable)} -c 'import json, os, sys; "
            f"json.dump(dict(os.environ), open(sys.argv[1], \"w\"))' {shlex.quote(str(env_out))}",
        ]
    )
    cp = subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=str(root),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert cp.returncode == 0, (
        f"the first-steps block ({block.where}) failed with exit {cp.returncode}\n"
        f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
    )
    print(f"--- first steps, stdout\n{cp.stdout}")
    return json.loads(env_out.read_text())


def test_readme_first_steps_and_python_example_run_as_written(reader):
    root, home, env = reader

    # The shell block: identity, daemon, first account, three records.
    after_shell = _run_shell_block(root, env)
    did, token = after_shell.get("DID", ""), after_shell.get("TOKEN", "")
    assert re.fullmatch(r"did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+", did), f"DID is {did!r}"
    assert token.startswith("spl_local_"), f"TOKEN is {token!r}"
    url = json.loads((home / "steward.json").read_text())["url"].rstrip("/")
    http = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10)
    written = http.get(f"/v1/threads/{THREAD}/records").json()["data"]
    assert [r["act"] for r in written] == ["INTEND", "DO", "KNOW"], written
    assert all(r["actor"] == did for r in written), written

    # The Python block, in the shell's environment; the README says it reads the steward's
    # address from SPL_ENDPOINT when set (this steward is on a free port, not on 9100).
    block = block_under(README, "From Python", "python")
    script = root / "example.py"
    script.write_text(block.text + "\n")
    py_env = dict(after_shell, SPL_ENDPOINT=url)
    cp = subprocess.run(
        [sys.executable, str(script)],
        env=py_env,
        cwd=str(root),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, (
        f"the Python block ({block.where}) failed with exit {cp.returncode}\n"
        f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
    )
    print(f"--- Python example, stdout\n{cp.stdout}")
    stored = re.search(r"^stored ([0-9a-f]{64})$", cp.stdout, re.M)
    assert stored, f"the example printed no stored id:\n{cp.stdout}"

    # What it printed is there: the record it wrote, as the SDK would hash it, signed, after the
    # three records of the shell block.
    record = http.get(f"/v1/records/{stored.group(1)}").json()
    assert record["actor"] == did and record["thread"] == THREAD, record
    assert record_id({k: record[k] for k in SEVEN}, fields=7) == record["id"], record
    assert re.fullmatch(r"[0-9a-f]{128}", record.get("sig") or ""), record
    listed = http.get(f"/v1/threads/{THREAD}/records").json()["data"]
    assert [r["id"] for r in listed] == [r["id"] for r in written] + [record["id"]]
    for r in listed:
        assert f"{r['sequence']} {r['act']}" in cp.stdout, f"the example did not list {r['id']}"
    http.close()
