"""Render the NATS configs of the compose and Kubernetes deployments.

Usage (from the repository root)::

    .venv/bin/python compose/generate.py          # rewrite stale files
    .venv/bin/python compose/generate.py --check  # exit 1 if any file is stale
    .venv/bin/python compose/generate.py --env    # also write compose/.env (new secrets)

Uses the same render functions as the tests and ``sitemesh up``; see
``sitemesh/topology/_compose.py`` for the placeholder-password scheme.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sitemesh.topology._compose import deployment_files, fill_env, stale_files, write_files

COMPOSE_DIR = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` verify) every generated file; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument(
        "--env",
        action="store_true",
        help="write compose/.env from .env.example with random secrets (never overwrites)",
    )
    args = parser.parse_args(argv)
    if args.env:
        env = COMPOSE_DIR / ".env"
        if env.exists():
            print(f"{env} exists; not overwriting it", file=sys.stderr)
            return 1
        env.touch(mode=0o600)
        env.write_text(fill_env((COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")))
        print(f"wrote {env} (mode 0600; keep it out of version control)")
    expected = deployment_files(COMPOSE_DIR)
    root = COMPOSE_DIR.parent
    if args.check:
        stale = stale_files(expected)
        for path in stale:
            print(f"stale: {path.relative_to(root)}", file=sys.stderr)
        if stale:
            print("run: .venv/bin/python compose/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write_files(expected):
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
