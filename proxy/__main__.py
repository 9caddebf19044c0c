"""tk-proxy: the entry point exists so the console script does; kube-proxy arrives with issue 5."""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-proxy: not implemented yet: kube-proxy arrives with issue 5 (see README.md)",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
