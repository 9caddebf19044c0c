"""The committed gRPC stubs match api/proto/tinykube.proto (regenerate: scripts/gen-proto)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ["tinykube_pb2.py", "tinykube_pb2.pyi", "tinykube_pb2_grpc.py"]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    env_bin = str(Path(sys.executable).parent)
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True,
                   env={"PATH": f"{env_bin}:/usr/bin:/bin"}, cwd=ROOT)
    stale = [name for name in GENERATED
             if (tmp_path / "api" / "proto" / name).read_bytes()
             != (ROOT / "api" / "proto" / name).read_bytes()]
    assert not stale, f"stale generated stubs {stale}: run scripts/gen-proto and commit"


def test_stubs_expose_every_verb() -> None:
    from api.proto import tinykube_pb2_grpc as g
    verbs = {"Create", "Get", "List", "Update", "Patch", "Delete", "DeleteCollection", "Watch",
             "Bind", "Discovery"}
    assert verbs <= set(dir(g.ApiServicer))
