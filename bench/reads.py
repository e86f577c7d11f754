#!/usr/bin/env python3
"""Sequential reads of one hosted tenant: the latency of a small page.

    .venv/bin/python bench/reads.py [--steward target/release/steward] [--records 2000] [--limit 10]

Starts the hosted `steward` on a Postgres database of its own (as bench/attacks.py does), writes
`--records` small records to one thread of one tenant, then pages through that thread `--limit`
records a page with `syncropel-bench page` (one client, five passes) and prints its JSON line:
`page_p50_ms`, `page_p99_ms`, `records_per_sec`. Alternate two builds to compare them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attacks  # noqa: E402  (the replica and the writer are shared)

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steward", default=str(ROOT / "target/release/steward"))
    parser.add_argument("--generator", default=str(ROOT / "target/release/syncropel-bench"))
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    admin_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    replica = attacks.Replica(Path(args.steward), admin_url)
    try:
        url, token = replica.tenant("reader")
        attacks.write_many(url, token, "th_read", 1, args.records, {"n": 1})
        run = subprocess.run(
            [args.generator, "page", "--url", url, "--token", token, "--thread", "th_read",
             "--limit", str(args.limit), "--passes", "5", "--expect", str(args.records)],
            capture_output=True, text=True, check=True)
        print(run.stdout.strip().splitlines()[-1])
    finally:
        replica.stop()


if __name__ == "__main__":
    main()
