"""The reference pages match the code: docs/api.md lists every route of the steward's router and
no other, the flag tables of docs/cli.md match the binaries' own help, and every relative link in
the docs leads to a file and heading that exist."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from docblocks import REPO_ROOT, binary, doc_files

ROUTER_FILES = {
    # file: the prefix its routes are served under
    "services/steward/src/app.rs": None,  # `/v1` for the routes of its `v1` router, else none
    "services/steward/src/routes/federation/mod.rs": "/v1",
    "services/steward/src/hosted/provision.rs": "",
}
# Served by the router's fallback rather than a route of its own.
FALLBACK_ROUTES = {("GET", "/.well-known/did.json"), ("GET", "/<path>/did.json")}

_ROUTE_START = re.compile(r'\.route\(\s*"([^"]+)",')
_METHOD = re.compile(r"\b(get|post|put|patch|delete)\(")


def _normalize(path: str) -> str:
    """`{id}`, `{*id}`, `{token_id}` are all one parameter; a query string is not part of it."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])


def _route_calls(text: str) -> list[tuple[str, str]]:
    """(path, handler expression) of every `.route("path", handlers)` call in `text`."""
    calls = []
    for start in _ROUTE_START.finditer(text):
        depth, i = 1, start.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append((start.group(1), text[start.end() : i - 1]))
    return calls


def router_routes() -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for rel, prefix in ROUTER_FILES.items():
        text = (REPO_ROOT / rel).read_text()
        text = text.split("#[cfg(test)]")[0]
        if prefix is None:
            # app.rs: routes before `let mut root` belong to the `v1` router, nested at `/v1`.
            v1, root = text.split("let mut root", 1)
            parts = [("/v1", v1), ("", root)]
        else:
            parts = [(prefix, text)]
        for pre, part in parts:
            for path, handlers in _route_calls(part):
                for method in _METHOD.findall(handlers):
                    routes.add((method.upper(), _normalize(pre + path)))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    """`METHOD /path` in the first cell of docs/api.md's table rows; `…/x` after a route means
    that route's last segment replaced by `x`."""
    routes: set[tuple[str, str]] = set()
    for line in (REPO_ROOT / "docs" / "api.md").read_text().split("\n"):
        if not line.startswith("| `"):
            continue
        cell = line.split(" | ")[0]
        last = None
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", cell) + [
            (None, p) for p in re.findall(r"`…(/[^`]*)`", cell)
        ]:
            if method is None:
                assert last, f"'…{path}' follows no route in: {line}"
                method, path = last[0], last[1].rsplit("/", 1)[0] + path
            last = (method, path)
            routes.add((method, _normalize(path)))
    return routes


def test_api_md_lists_every_route_of_the_router():
    served = router_routes()
    assert len(served) > 50, sorted(served)  # the parser found the router
    documented = documented_routes()
    missing = served - documented
    extra = documented - served - FALLBACK_ROUTES
    assert not missing, f"routes docs/api.md does not list: {sorted(missing)}"
    assert not extra, f"routes docs/api.md lists that the router does not serve: {sorted(extra)}"


# ---------------------------------------------------------------------------
# links
# ---------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in path.read_text().split("\n"):
        if line.strip().startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_relative_links_lead_somewhere():
    pages = [*doc_files(), REPO_ROOT / "CONTRIBUTING.md"]
    broken: list[str] = []
    checked = 0
    for page in pages:
        in_code = False
        for number, line in enumerate(page.read_text().split("\n"), 1):
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            if in_code:
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):
                    continue  # an absolute URL
                file_part, _, anchor = target.partition("#")
                dest = (page.parent / file_part).resolve() if file_part else page
                checked += 1
                where = f"{page.relative_to(REPO_ROOT)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                    broken.append(f"{where} (no such heading)")
    assert checked > 50
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------------------
# docs/cli.md's flag tables
# ---------------------------------------------------------------------------

# The flag tables of docs/cli.md, by the heading they are under, and the command whose help they
# document.
CLI_TABLES = {
    "Global flags": ["spl"],
    "Identity and the local steward": ["spl", "identity", "upgrade"],
    "`spl serve`": ["spl", "serve"],
    "Federation": ["spl", "fleet", "sync", "peers", "discover"],
    "`steward` (hosted)": ["steward"],
    "`directory`": ["directory"],
    "`relay`": ["relay"],
}
GLOBAL_SPL_FLAGS = {"--home", "--endpoint", "--token", "--json", "--output-format"}


def _flag_tables() -> dict[str, list[list[str]]]:
    """Rows (cells) of the tables in docs/cli.md whose second column is `Env`, by heading."""
    tables: dict[str, list[list[str]]] = {}
    heading, in_env_table = "", False
    for line in (REPO_ROOT / "docs" / "cli.md").read_text().split("\n"):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            in_env_table = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) > 1 and cells[1] == "Env":
            in_env_table = True
            tables.setdefault(heading, [])
        elif in_env_table and not set(cells[0]) <= set("-"):
            tables[heading].append(cells)
    return tables


def _help_sections(argv: list[str]) -> dict[str, str]:
    """`--flag` -> its text in `<argv> --help`."""
    exe = binary(argv[0])
    out = subprocess.run(
        [str(exe), *argv[1:], "--help"], capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ.get("PATH", "")},
    ).stdout
    sections: dict[str, str] = {}
    current = None
    for line in out.split("\n"):
        m = re.match(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", line)
        if m:
            current = m.group(1)
            sections[current] = line[m.end() :] + "\n"  # a short help has it all on this line
        elif current:
            sections[current] += line + "\n"
    sections.pop("--help", None)
    sections.pop("--version", None)
    return sections


def test_cli_md_flag_tables_match_the_binaries():
    tables = _flag_tables()
    assert set(tables) == set(CLI_TABLES), sorted(tables)
    problems: list[str] = []
    for heading, argv in CLI_TABLES.items():
        sections = _help_sections(argv)
        documented = set()
        for cells in tables[heading]:
            flag = re.match(r"`(--[a-z0-9-]+)", cells[0])
            assert flag, f"{heading}: no flag in {cells[0]!r}"
            flag = flag.group(1)
            documented.add(flag)
            where = f"{' '.join(argv)} {flag}"
            if flag not in sections:
                problems.append(f"{where}: not a flag of the binary")
                continue
            env = re.search(r"\[env: ([A-Z0-9_]+)", sections[flag])
            documented_env = re.findall(r"`([A-Z0-9_]+)`", cells[1])
            if (env.group(1) if env else None) != (documented_env[0] if documented_env else None):
                problems.append(f"{where}: env is {env and env.group(1)}, docs say {documented_env}")
            default = re.search(r"\[default: ([^\]]*)\]", sections[flag])
            documented_default = re.findall(r"`([^`]*)`", cells[2]) if len(cells) > 2 else []
            # A default with spaces is prose of the flag's own doc comment, not clap's default.
            if default and " " not in default.group(1) and documented_default \
                    and default.group(1) not in documented_default:
                problems.append(f"{where}: default is {default.group(1)}, docs say {documented_default}")
        ignored = GLOBAL_SPL_FLAGS if argv[0] == "spl" and len(argv) > 1 else set()
        for flag in sorted(set(sections) - documented - ignored):
            problems.append(f"{' '.join(argv)} {flag}: not in docs/cli.md")
    assert not problems, "\n".join(problems)


def test_paths_the_docs_name_exist():
    """Every repository path the docs write in backticks (`crates/…`, `services/…`, …) exists."""
    pattern = re.compile(
        r"`((?:crates|services|docs|tests|bench|deploy|helm|migrations|scripts|fuzz)/[^`\s]*)`"
    )
    missing: list[str] = []
    checked = 0
    for page in [*doc_files(), REPO_ROOT / "CONTRIBUTING.md"]:
        for number, line in enumerate(page.read_text().split("\n"), 1):
            for path in pattern.findall(line):
                if any(c in path for c in "<*…"):
                    continue  # a pattern, not a path
                brace = re.search(r"\{([^}]*)\}", path)
                options = [path[: brace.start()] + o + path[brace.end() :] for o in brace.group(1).split(",")] if brace else [path]
                for option in options:
                    checked += 1
                    if not (REPO_ROOT / option).exists():
                        missing.append(f"{page.relative_to(REPO_ROOT)}:{number}: {option}")
    assert checked > 30
    assert not missing, "\n".join(missing)
