"""tk-cni: the CNI plugin (bridge + host-local IPAM) the kubelet execs; arrives with issue 4."""

from __future__ import annotations

import sys


def main() -> None:
    print("tk-cni: not implemented yet", file=sys.stderr)
    sys.exit(2)
