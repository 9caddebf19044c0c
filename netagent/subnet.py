"""subnet.env: the file through which the network agent tells the node's CNI plugin its subnet.

flannel writes `/run/flannel/subnet.env` and the CNI plugin (here netagent/cni.py, through
`ipam.choose_subnet`) reads it on every ADD: that file, not the apiserver, is the node-local
hand-off between the two (DESIGN §1). The format is flannel's, so either side could be swapped
for the real one:

    FLANNEL_NETWORK=10.244.0.0/16     the whole cluster network
    FLANNEL_SUBNET=10.244.1.1/24      this node's podCIDR, written as its first address (the
                                      bridge's gateway) with the prefix, as flannel does
    FLANNEL_MTU=1450                  the VXLAN device's MTU: pods' interfaces must not exceed it
    FLANNEL_IPMASQ=true               whether the agent masquerades pod traffic leaving the network
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass

from netagent.ipam import parse_subnet_env


@dataclass(frozen=True)
class SubnetEnv:
    network: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Network  # the node's podCIDR
    mtu: int
    ipmasq: bool

    def render(self) -> str:
        gateway = self.subnet.network_address + 1
        return (f"FLANNEL_NETWORK={self.network}\n"
                f"FLANNEL_SUBNET={gateway}/{self.subnet.prefixlen}\n"
                f"FLANNEL_MTU={self.mtu}\n"
                f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n")

    @classmethod
    def parse(cls, text: str) -> SubnetEnv:
        """The inverse of `render` (ValueError naming the key when something is off)."""
        env = parse_subnet_env(text)
        try:
            network = ipaddress.IPv4Network(env["FLANNEL_NETWORK"])
            subnet = ipaddress.IPv4Interface(env["FLANNEL_SUBNET"]).network
            mtu = int(env["FLANNEL_MTU"])
            masq = env.get("FLANNEL_IPMASQ", "false")
        except KeyError as e:
            raise ValueError(f"subnet.env: no {e.args[0]}") from None
        except ValueError as e:
            raise ValueError(f"subnet.env: {e}") from None
        if masq not in ("true", "false"):
            raise ValueError(f"subnet.env: FLANNEL_IPMASQ: {masq!r} is not true or false")
        return cls(network, subnet, mtu, masq == "true")


def write_atomic(path: str, text: str) -> bool:
    """Write `text` to `path` unless it already says exactly that; True when written.

    A temporary file in the same directory renamed over the target: a CNI ADD reading the file
    concurrently sees the old or the new content, never half of one.
    """
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".subnet.env.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True
