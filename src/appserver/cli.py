"""Command line (placeholder until the configuration issue lands): ``appserver serve APP``."""

from __future__ import annotations

import sys


def main() -> None:
    import appserver

    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "serve":
        appserver.run(args[1])
    else:
        print("usage: appserver serve module:app", file=sys.stderr)
        raise SystemExit(2)
