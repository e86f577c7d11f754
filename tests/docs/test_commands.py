"""Every command line of `spl`, `steward`, `directory` and `relay` in the fenced blocks of README.md and
docs/*.md is one the binary accepts.

Each is run with `--help` appended, after its placeholders (`<url>`, `th_…`, `$TOKEN`, an option
in `[…]`) got sample values: clap then checks the subcommand path, every flag name and every flag
value before it prints the help, and runs nothing. A documented command the binary refuses fails
its test, with clap's message.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

import pytest

from docblocks import README, binary, commands, doc_files

COMMANDS = commands()


def test_the_docs_have_commands_to_check():
    # A change to the extraction that silently finds nothing must not pass as "all accepted".
    per_file = {path: [c for c in COMMANDS if c.block.path == path] for path in doc_files()}
    assert len(per_file[README]) >= 10, [c.source for c in per_file[README]]
    assert sum(len(found) for found in per_file.values()) >= 30
    assert {c.binary for c in COMMANDS} == {"spl", "steward", "directory", "relay"}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_the_binary_accepts_the_documented_command(command):
    exe = binary(command.binary)
    assert exe.exists(), f"{exe} is not built (cargo build -p spl -p syncropel-steward -p syncropel-directory -p syncropel-relay)"
    with tempfile.TemporaryDirectory(prefix="docs-cli-") as home:
        # Nothing from the caller's environment may fill in a flag the line leaves out.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "SYNCROPEL_HOME": home}
        cp = subprocess.run(
            [str(exe), *command.args, "--help"],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert cp.returncode == 0, (
        f"{command.id}: `{command.binary}` refuses the documented command\n"
        f"  as written: {command.source}\n"
        f"  checked as: {shlex.join([command.binary, *command.args, '--help'])}\n"
        f"{cp.stderr.strip()}"
    )
