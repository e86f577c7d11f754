"""Reading the docs as the tests need them: fenced code blocks, the command lines in them, and
where the binaries they name were built."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

# Languages of the blocks whose lines are shell commands; unlabelled blocks are read too (a line
# of pseudo-code there never starts with a binary of ours).
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
# The binaries this workspace builds, by the name a command line calls them.
BINARIES = ("spl", "steward", "directory", "relay")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    heading: str  # the nearest heading above the block
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, indented ones (in lists) included."""
    found: list[Block] = []
    heading = ""
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            heading = stripped.lstrip("#").strip()
        if stripped.startswith("```"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            lang = stripped[3:].strip()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                # A block indented in a list keeps its own indentation, less the list's.
                line = lines[j]
                body.append(line[min(indent, len(line) - len(line.lstrip())) :])
                j += 1
            found.append(Block(path, i + 1, lang, heading, "\n".join(body)))
            i = j + 1
            continue
        i += 1
    return found


def block_under(path: Path, heading: str, lang: str) -> Block:
    """The one block of `lang` under the heading `heading` (exact text)."""
    matches = [b for b in blocks(path) if b.heading == heading and b.lang == lang]
    assert len(matches) == 1, (
        f"expected one ```{lang} block under '{heading}' in {path.name}, found {len(matches)}"
    )
    return matches[0]


def doc_files() -> list[Path]:
    return [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]


# ---------------------------------------------------------------------------
# command lines
# ---------------------------------------------------------------------------


@dataclass
class Command:
    block: Block
    line: int  # 1-based line in the file
    source: str  # the line as written (continuations joined)
    binary: str  # spl, steward or directory
    args: list[str]  # with placeholders replaced by sample values

    @property
    def id(self) -> str:
        return f"{self.block.path.relative_to(REPO_ROOT)}:{self.line}"


# Sample values for the placeholders the docs write: `<url>`-style names, shell variables, and
# the ellipsis that shortens ids and DIDs (`th_…`, `did:key:z6Mk…`).
SAMPLE_URL = "http://127.0.0.1:9"
SAMPLE_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
SAMPLE_TOKEN = "spl_local_sa_0123456789abcdef_secret"
VARIABLES = {"TOKEN": SAMPLE_TOKEN, "DID": SAMPLE_DID}

_ANGLE = re.compile(r"<([A-Za-z][A-Za-z0-9_ -]*)>")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_MENTIONS_BINARY = re.compile(r"(^|[\s;&|(/])(" + "|".join(BINARIES) + r")(\s|$)")
_DOCKER_EXEC_VALUED = {"-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir"}
_OPERATORS = {"(", ")", "&&", "||", ";", "|", "&", "$("}


def _angle_sample(match: re.Match) -> str:
    name = match.group(1).lower()
    if "url" in name or "endpoint" in name:
        return SAMPLE_URL
    if "did" in name:
        return SAMPLE_DID
    if "token" in name:
        return SAMPLE_TOKEN
    return "example"


def _sample(token: str) -> str:
    """One shell word with its placeholders replaced."""
    token = _VARIABLE.sub(lambda m: VARIABLES.get(m.group(1), "example"), token)
    # `[--flag VALUE]` marks an option: check it as if given.
    if token.startswith("[") and not token.startswith("[{"):
        token = token[1:]
    if token.endswith("]") and not token.endswith("}]") and "[" not in token:
        token = token[:-1]
    return token


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's lines with `\\` continuations joined, each with its line number in the file."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(block.text.split("\n")):
        if not pending:
            start = block.line + 1 + offset
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        out.append((start, " ".join(p.strip() for p in pending)))
        pending = []
    if pending:
        out.append((start, " ".join(p.strip() for p in pending)))
    return out


def _simple_commands(line: str) -> list[list[str]]:
    """A shell line split into its simple commands (at `&&`, `;`, `|`, `$(…)` and the like), each
    without its leading `VAR=value` assignments; comments dropped."""
    line = _ANGLE.sub(_angle_sample, line).replace("…", "example")
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = []
    current: list[str] = []
    for token in lexer:
        if token in _OPERATORS or set(token) <= set("();&|"):
            if current:
                commands.append(current)
            current = []
            continue
        if not current and _ASSIGNMENT.match(token):
            continue  # an environment assignment before the command
        current.append(token)
    if current:
        commands.append(current)
    return commands


def _our_command(words: list[str]) -> tuple[str, list[str]] | None:
    """(binary, arguments) when a simple command runs one of our binaries: directly, through
    `cargo run -p <bin> -- …`, or inside a container with `docker exec <name> <bin> …`."""
    if not words:
        return None
    name = os.path.basename(words[0])
    if name in BINARIES:
        return name, words[1:]
    if words[:2] == ["cargo", "run"] and "--" in words:
        package = words[words.index("-p") + 1] if "-p" in words else None
        if package in BINARIES:
            return package, words[words.index("--") + 1 :]
    if words[:2] == ["docker", "exec"]:
        i = 2
        while i < len(words) and words[i].startswith("-"):
            i += 2 if words[i] in _DOCKER_EXEC_VALUED else 1
        # words[i] names the container, words[i + 1] the program run in it.
        if i + 1 < len(words) and os.path.basename(words[i + 1]) in BINARIES:
            return os.path.basename(words[i + 1]), words[i + 2 :]
    return None


def commands(files: list[Path] | None = None) -> list[Command]:
    """Every command line of our binaries in the shell blocks of `files` (default: the README and
    docs/*.md)."""
    found: list[Command] = []
    for path in files or doc_files():
        for block in blocks(path):
            if block.lang not in SHELL_LANGS:
                continue
            for line_no, line in _logical_lines(block):
                if not _MENTIONS_BINARY.search(line):
                    continue  # prose or data in an unlabelled block
                for words in _simple_commands(line):
                    ours = _our_command(words)
                    if ours:
                        binary, args = ours
                        found.append(
                            Command(block, line_no, line.strip(), binary, [_sample(a) for a in args])
                        )
    return found


# ---------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------


def spl_bin() -> Path:
    raw = Path(os.environ.get("SPL_BIN", "target/debug/spl"))
    return raw if raw.is_absolute() else REPO_ROOT / raw


def binary(name: str) -> Path:
    """Where `name` was built: `SPL_BIN` for spl, `STEWARD_BIN` for steward, else beside spl."""
    if name == "spl":
        return spl_bin()
    override = os.environ.get(f"{name.upper()}_BIN")
    if override:
        p = Path(override)
        return p if p.is_absolute() else REPO_ROOT / p
    return spl_bin().parent / name
