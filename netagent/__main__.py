"""tk-netagent: a placeholder until the network agent arrives (issue 5).

The console script exists from the start so the skeleton is complete; running it says so.
"""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-netagent: not implemented yet: the network agent arrives with issue 5 "
          "(see README.md)", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
