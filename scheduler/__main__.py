"""tk-scheduler: the entry point exists so the console script does; the scheduler arrives with issue 3."""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-scheduler: not implemented yet: the scheduler arrives with issue 3 (see README.md)",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
