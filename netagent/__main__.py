"""tk-netagent: the entry point exists so the console script does; the network agent arrives with issue 5."""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-netagent: not implemented yet: the network agent arrives with issue 5 (see README.md)",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
