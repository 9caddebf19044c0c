"""`python -m tkctl` / the `tkctl` console script: argv in, exit code out (wiring only)."""

from __future__ import annotations

import asyncio
import os
import sys

from tkctl.commands import execute


def run(argv: list[str]) -> int:
    """Run one command line to completion; Ctrl-C and a closed stdout end it quietly."""
    try:
        return asyncio.run(execute(argv, stdin=sys.stdin))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tkctl get pods | head`: stop writing, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
