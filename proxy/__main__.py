"""tk-proxy: a placeholder until kube-proxy arrives (issue 5).

The console script exists from the start so the skeleton is complete; running it says so.
"""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-proxy: not implemented yet: kube-proxy arrives with issue 5 "
          "(see README.md)", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
