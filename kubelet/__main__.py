"""tk-kubelet: the entry point exists so the console script does; the kubelet arrives with issue 4."""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-kubelet: not implemented yet: the kubelet arrives with issue 4 (see README.md)",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
