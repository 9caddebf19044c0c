"""tk-kubelet: a placeholder until the kubelet arrives (issue 4).

The console script exists from the start so the skeleton is complete; running it says so.
"""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-kubelet: not implemented yet: the kubelet arrives with issue 4 "
          "(see README.md)", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
