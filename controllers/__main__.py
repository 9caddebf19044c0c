"""tk-controller-manager: a placeholder until the controller-manager arrives (issue 3).

The console script exists from the start so the skeleton is complete; running it says so.
"""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-controller-manager: not implemented yet: the controller-manager arrives with issue 3 "
          "(see README.md)", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
