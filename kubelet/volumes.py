"""Pod volumes on the node's disk, laid out as upstream's kubelet lays them out.

Every pod gets `<root>/pods/<uid>/`; a volume of plugin P named N lives in
`volumes/kubernetes.io~P/N` (`empty-dir`, `configmap`, `secret`, `projected`, `downward-api`;
a hostPath volume is the host's path itself), and the pod's managed `/etc/hosts` in `etc-hosts`.
Docker bind-mounts these into the containers (`mounts`), so the pod's containers share them and
they outlive container restarts; `teardown` removes them with the pod.

API-data volumes (configMap, secret, projected, downwardAPI) are written with upstream's
AtomicWriter layout, so that a running container never sees a half-updated set of files:

    ..2026_01_02_15_04_05.123456789/key     the payload, one timestamped directory per version
    ..data -> ..2026_01_02_15_04_05.123456789   swapped with one rename(2)
    key -> ..data/key                        what the container opens

`setup` is called on every pod sync and rewrites the payload only when it changed, so an updated
ConfigMap or Secret reaches the files on the next sync (upstream: within the sync period plus
its cache TTL, about a minute), and projected ServiceAccount tokens are renewed once 80% of
their lifetime has passed (upstream's token manager).

Errors carry upstream's FailedMount text: `MountVolume.SetUp failed for volume "cfg" :
configmap "cfg" not found`.

Deviations: secret volumes are plain directories, not tmpfs (upstream mounts a tmpfs so that
secrets never touch the disk); emptyDir `medium: Memory` is a tmpfs when the kubelet may mount
one (it runs as root) and a plain directory otherwise; persistentVolumeClaim and nfs volumes
are not supported and fail the pod's mount with a message that says so.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from api import errors
from api.quantity import QuantityError, to_bytes
from client.apiclient import ApiClient
from kubelet.envvars import (
    EnvError,
    FieldPathError,
    extract_field_path,
    not_found_message,
    resource_field_value,
)
from kubelet.runtime import Mount

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# Volume source field → upstream's escaped plugin name (the directory under volumes/).
PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "projected": "kubernetes.io~projected",
    "downwardAPI": "kubernetes.io~downward-api",
}
# Volumes whose contents come from the API: always mounted read-only (upstream since 1.10).
API_DATA_SOURCES = ("configMap", "secret", "projected", "downwardAPI")
DEFAULT_MODE = 0o644  # configMap, secret, projected and downwardAPI defaultMode (420)
EMPTY_DIR_MODE = 0o777
TOKEN_DEFAULT_EXPIRATION = 3600  # serviceAccountToken.expirationSeconds default
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE = 24 * 3600  # upstream refreshes a token at least once a day
ETC_HOSTS_PATH = "/etc/hosts"
DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"


class VolumeError(Exception):
    """A volume that cannot be set up (or mounted): the message is upstream's FailedMount
    text; `volume` names the volume, `messages` has one line per failed volume."""

    def __init__(self, message: str, volume: str = "", messages: list[str] | None = None
                 ) -> None:
        super().__init__(message)
        self.volume = volume
        self.messages = messages or [message]


class _SourceError(Exception):
    """One volume's setup failed; the manager wraps it into MountVolume.SetUp's text."""


@dataclass
class FileProjection:
    data: bytes
    mode: int


@dataclass
class _Token:
    token: str
    issued: float       # wall clock (the expiry the apiserver reports is wall clock too)
    expires: float

    def needs_refresh(self, now: float) -> bool:
        ttl = self.expires - self.issued
        return now >= self.issued + TOKEN_REFRESH_FRACTION * ttl or (
            now >= self.issued + TOKEN_MAX_AGE)


def volume_source(volume: Obj) -> str:
    """The volume's type: the one source field it sets (validation guarantees one)."""
    for key in volume:
        if key != "name" and volume.get(key) is not None:
            return key
    return ""


# --- AtomicWriter -----------------------------------------------------------------------------


def _check_payload_path(path: str) -> None:
    """upstream validatePath: relative, no `..` element, not starting with `..`."""
    if not path:
        raise _SourceError("invalid path: must not be empty")
    if os.path.isabs(path):
        raise _SourceError(f"invalid path: must be relative path: {path}")
    if len(path) > 4096:
        raise _SourceError(f"invalid path: must be less than or equal to 4096 characters: {path}")
    if ".." in path.split("/"):
        raise _SourceError(f"invalid path: must not contain '..': {path}")
    if path.startswith(".."):
        raise _SourceError(f"invalid path: must not start with '..': {path}")


def _read_tree(directory: Path) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    for root, _dirs, files in os.walk(directory):
        for f in files:
            full = Path(root) / f
            rel = str(full.relative_to(directory))
            try:
                out[rel] = FileProjection(full.read_bytes(), stat.S_IMODE(full.stat().st_mode))
            except OSError:
                continue
    return out


def write_atomic(target: Path, payload: Mapping[str, FileProjection]) -> bool:
    """upstream AtomicWriter.Write: publish `payload` in `target` atomically. Returns whether
    anything was written (an unchanged payload is left alone, so a container's open file and
    inotify watches are not disturbed for nothing)."""
    for p in payload:
        _check_payload_path(p)
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR
    old_ts: str | None = None
    if data_link.is_symlink():
        old_ts = os.readlink(data_link)
    current = _read_tree(target / old_ts) if old_ts else None
    visible_new = {p.split("/", 1)[0] for p in payload}
    visible_old = {p.split("/", 1)[0] for p in current} if current is not None else set()
    if current is not None and current == dict(payload):
        _ensure_visible(target, visible_new)
        return False

    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    ts_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    try:
        os.chmod(ts_dir, 0o755)
        for rel, proj in payload.items():
            full = ts_dir / rel
            full.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            full.write_bytes(proj.data)
            os.chmod(full, proj.mode)
        tmp_link = target / DATA_DIR_TMP
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(ts_dir.name, tmp_link)
        os.rename(tmp_link, data_link)  # the atomic swap
    except BaseException:
        shutil.rmtree(ts_dir, ignore_errors=True)
        raise
    _ensure_visible(target, visible_new)
    for name in sorted(visible_old - visible_new):
        gone = target / name
        if gone.is_symlink():
            gone.unlink()
    if old_ts and old_ts != ts_dir.name:
        shutil.rmtree(target / old_ts, ignore_errors=True)
    return True


def _ensure_visible(target: Path, names: set[str]) -> None:
    """The user-visible entries: one symlink per top-level path, into `..data`."""
    for name in sorted(names):
        link = target / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link, ignore_errors=True) if link.is_dir() else link.unlink()
            os.symlink(f"{DATA_DIR}/{name}", link)


# --- payloads ---------------------------------------------------------------------------------


def _mode(item_mode: int | None, default_mode: int) -> int:
    return item_mode if item_mode is not None else default_mode


def configmap_payload(items: list[Obj] | None, cm: Obj, default_mode: int, optional: bool,
                      ) -> dict[str, FileProjection]:
    """upstream configmap.MakePayload: every key, or the listed items."""
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    binary = {k: base64.b64decode(v or "") for k, v in (cm.get("binaryData") or {}).items()}
    return _payload(items, {**binary, **data}, default_mode, optional,
                    "configmap references non-existent config key")


def secret_payload(items: list[Obj] | None, secret: Obj, default_mode: int, optional: bool,
                   ) -> dict[str, FileProjection]:
    """upstream secret.MakePayload (the data is base64 on the wire)."""
    data = {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}
    return _payload(items, data, default_mode, optional,
                    "references non-existent secret key")


def _payload(items: list[Obj] | None, data: Mapping[str, bytes], default_mode: int,
             optional: bool, missing: str) -> dict[str, FileProjection]:
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out: dict[str, FileProjection] = {}
    for item in items:
        key = str(item.get("key") or "")
        if key not in data:
            if optional:
                continue
            raise _SourceError(f"{missing}: {key}")
        out[str(item.get("path") or key)] = FileProjection(
            data[key], _mode(item.get("mode"), default_mode))
    return out


def downward_payload(items: list[Obj] | None, pod: Obj, default_mode: int
                     ) -> dict[str, FileProjection]:
    """upstream downwardapi.CollectData: metadata fields and container resources as files."""
    out: dict[str, FileProjection] = {}
    errs: list[str] = []
    for item in items or []:
        path = str(item.get("path") or "")
        mode = _mode(item.get("mode"), default_mode)
        try:
            if item.get("fieldRef"):
                value = extract_field_path(pod, str(item["fieldRef"].get("fieldPath") or ""))
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                container: Obj = next((c for c in (pod.get("spec") or {}).get("containers") or []
                                  if c.get("name") == ref.get("containerName")), {})
                value = resource_field_value(pod, container, ref)
            else:
                continue
        except (FieldPathError, EnvError) as e:
            errs.append(str(e))
            continue
        out[path] = FileProjection(value.encode(), mode)
    if errs:
        raise _SourceError(errs[0] if len(errs) == 1 else f"[{', '.join(errs)}]")
    return out


def _rfc3339_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_hostname(pod: Obj) -> str:
    """upstream GeneratePodHostNameAndDomain's hostname: spec.hostname or the pod's name, cut
    to 63 characters without a trailing '-' or '.'."""
    spec, md = pod.get("spec") or {}, pod.get("metadata") or {}
    name = str(spec.get("hostname") or md.get("name") or "")
    return name[:63].rstrip("-.") if len(name) > 63 else name


def managed_hosts(pod_ips: list[str], hostname: str, domain: str,
                  aliases: list[Obj] | None) -> bytes:
    """upstream managedHostsFileContent."""
    lines = ["# Kubernetes-managed hosts file.",
             "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes",
             "fe00::2\tip6-allrouters"]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    return ("\n".join(lines) + "\n").encode() + _alias_entries(aliases)


def _alias_entries(aliases: list[Obj] | None) -> bytes:
    if not aliases:
        return b""
    out = "\n# Entries added by HostAliases.\n"
    for a in aliases:
        out += f"{a.get('ip', '')}\t{chr(9).join(a.get('hostnames') or [])}\n"
    return out.encode()


def pod_ips_of(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


# --- the manager ------------------------------------------------------------------------------


class VolumeManager:
    """Sets up, mounts and removes the volumes of the pods this kubelet runs."""

    def __init__(self, client: ApiClient, root_dir: Path, node_name: str, *,
                 cluster_domain: str = "cluster.local",
                 node_hosts_file: str = ETC_HOSTS_PATH) -> None:
        self.client = client
        self.root_dir = Path(root_dir)
        self.node_name = node_name
        self.cluster_domain = cluster_domain
        self.node_hosts_file = node_hosts_file
        # (pod uid, volume name, path) → the projected token last written there.
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._memory_ok: bool | None = None

    # --- paths ----------------------------------------------------------------------------

    @property
    def pods_dir(self) -> Path:
        return self.root_dir / "pods"

    def pod_dir(self, uid: str) -> Path:
        if not uid or "/" in uid or uid in (".", ".."):
            raise VolumeError(f"invalid pod uid {uid!r}")
        return self.pods_dir / uid

    def volume_dir(self, uid: str, source: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / PLUGIN_DIRS[source] / name

    def pod_dirs(self) -> list[str]:
        """The uids that have a directory here (to find orphans after a restart)."""
        try:
            return sorted(p.name for p in self.pods_dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    # --- setup ----------------------------------------------------------------------------

    async def setup(self, pod: Obj) -> dict[str, str]:
        """Set up every volume of `pod` (idempotent; refreshes API data and tokens).

        Returns volume name → host path. Every volume is tried; VolumeError names the first
        failure (and lists all in `messages`)."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        volumes_dir = self.pod_dir(uid) / "volumes"
        await asyncio.to_thread(volumes_dir.mkdir, mode=0o750, parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        failures: list[tuple[str, str]] = []
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = str(volume.get("name") or "")
            try:
                paths[name] = await self._setup_volume(pod, uid, volume)
            except _SourceError as e:
                failures.append((name, str(e)))
            except OSError as e:
                failures.append((name, str(e)))
        if failures:
            msgs = [f'MountVolume.SetUp failed for volume "{n}" : {m}' for n, m in failures]
            raise VolumeError(msgs[0], failures[0][0], msgs)
        return paths

    async def _setup_volume(self, pod: Obj, uid: str, volume: Obj) -> str:
        name = str(volume.get("name") or "")
        source = volume_source(volume)
        spec = volume.get(source) or {}
        if source == "hostPath":
            path = str(spec.get("path") or "")
            await asyncio.to_thread(check_host_path, path, str(spec.get("type") or ""))
            return path
        if source not in PLUGIN_DIRS:
            raise _SourceError(f"volume type {source or '(none)'} is not supported by "
                               "tinykube's kubelet")
        target = self.volume_dir(uid, source, name)
        if source == "emptyDir":
            await self._empty_dir(target, spec)
            return str(target)
        ns = str((pod.get("metadata") or {}).get("namespace") or "default")
        default_mode = spec.get("defaultMode")
        mode = int(default_mode) if default_mode is not None else DEFAULT_MODE
        if source == "configMap":
            payload = await self._configmap(ns, spec, mode)
        elif source == "secret":
            payload = await self._secret(ns, spec, mode, name_key="secretName")
        elif source == "downwardAPI":
            payload = downward_payload(spec.get("items"), pod, mode)
        else:
            payload = await self._projected(pod, uid, name, spec, mode)
        await asyncio.to_thread(write_atomic, target, payload)
        return str(target)

    async def _empty_dir(self, target: Path, spec: Obj) -> None:
        mounted = await asyncio.to_thread(_make_empty_dir, target)
        if spec.get("medium") == "Memory" and not mounted:
            await self._mount_tmpfs(target, spec.get("sizeLimit"))

    async def _mount_tmpfs(self, target: Path, size_limit: Any) -> None:
        if self._memory_ok is False or os.geteuid() != 0:
            return
        opts = "mode=0777"
        if size_limit:
            try:
                opts += f",size={to_bytes(size_limit)}"
            except (QuantityError, ValueError):
                pass
        proc = await asyncio.create_subprocess_exec(
            "mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            # A kubelet in a container without CAP_SYS_ADMIN: keep the plain directory.
            self._memory_ok = False
            log.warning("emptyDir medium Memory: cannot mount tmpfs on %s (%s); using a "
                        "directory on disk", target, err.decode(errors="replace").strip())

    async def _get(self, resource: str, ns: str, name: str, optional: bool) -> Obj | None:
        try:
            return await self.client.get(resource, name, ns)
        except errors.NotFound:
            if optional:
                return None
            raise _SourceError(not_found_message(resource, name)) from None
        except errors.ApiError as e:
            raise _SourceError(str(e)) from None

    async def _configmap(self, ns: str, spec: Obj, mode: int, *, name_key: str = "name"
                         ) -> dict[str, FileProjection]:
        optional = bool(spec.get("optional"))
        cm = await self._get("configmaps", ns, str(spec.get(name_key) or ""), optional)
        return configmap_payload(spec.get("items"), cm or {}, mode, optional)

    async def _secret(self, ns: str, spec: Obj, mode: int, *, name_key: str
                      ) -> dict[str, FileProjection]:
        optional = bool(spec.get("optional"))
        secret = await self._get("secrets", ns, str(spec.get(name_key) or ""), optional)
        return secret_payload(spec.get("items"), secret or {}, mode, optional)

    async def _projected(self, pod: Obj, uid: str, volume: str, spec: Obj, mode: int
                         ) -> dict[str, FileProjection]:
        """upstream projected collectData: each source's payload, errors aggregated."""
        ns = str((pod.get("metadata") or {}).get("namespace") or "default")
        payload: dict[str, FileProjection] = {}
        errs: list[str] = []
        for src in spec.get("sources") or []:
            try:
                if src.get("secret") is not None:
                    payload.update(await self._secret(ns, src["secret"], mode, name_key="name"))
                elif src.get("configMap") is not None:
                    payload.update(await self._configmap(ns, src["configMap"], mode))
                elif src.get("downwardAPI") is not None:
                    payload.update(downward_payload(src["downwardAPI"].get("items"), pod, mode))
                elif src.get("serviceAccountToken") is not None:
                    tp = src["serviceAccountToken"]
                    token = await self._token(pod, uid, volume, tp)
                    payload[str(tp.get("path") or "token")] = FileProjection(
                        token.encode(), mode)
            except _SourceError as e:
                errs.append(str(e))
        if errs:
            raise _SourceError(errs[0] if len(errs) == 1 else f"[{', '.join(errs)}]")
        return payload

    async def _token(self, pod: Obj, uid: str, volume: str, tp: Obj) -> str:
        """A TokenRequest bound to the pod (NodeRestriction requires the binding and its
        uid), reused until 80% of its lifetime has passed (upstream's token manager)."""
        key = (uid, volume, str(tp.get("path") or "token"))
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.token
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        sa = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        req_spec: Obj = {
            "expirationSeconds": int(tp.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md.get("name"),
                               "uid": md.get("uid")},
        }
        if tp.get("audience"):
            req_spec["audiences"] = [tp["audience"]]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": req_spec}
        try:
            tr = await self.client.create("serviceaccounts", body, str(md.get("namespace")),
                                          name=sa, subresource="token")
        except errors.ApiError as e:
            if cached is not None and now < cached.expires:
                log.warning("pod %s: renewing the token of volume %s failed (%s); the current "
                            "one is still valid", uid, volume, e)
                return cached.token
            raise _SourceError(f"failed to fetch token: {e}") from None
        status = tr.get("status") or {}
        try:
            expires = _rfc3339_seconds(str(status.get("expirationTimestamp") or ""))
        except ValueError:
            expires = now + float(req_spec["expirationSeconds"])
        self._tokens[key] = _Token(str(status.get("token") or ""), now, expires)
        return self._tokens[key].token

    # --- mounts ---------------------------------------------------------------------------

    def mounts(self, pod: Obj, container: Obj, paths: dict[str, str]) -> list[Mount]:
        """The container's bind mounts: its volumeMounts (a subPath joined, created if
        missing, and kept inside its volume) and the pod's managed /etc/hosts.

        /etc/hosts is mounted as upstream's makeMounts does: only once the pod has an IP
        (the caller puts it in pod.status.podIP first) and only if the container does not
        mount /etc/hosts itself. Pods on the host network get it too, with the node's own
        /etc/hosts as content (upstream since 1.8); the others get the managed file with
        localhost and `<podIP>\\t<hostname>`."""
        volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or []}
        cname = str(container.get("name") or "")
        out: list[Mount] = []
        mounts_hosts = False
        for vm in container.get("volumeMounts") or []:
            name = str(vm.get("name") or "")
            mount_path = str(vm.get("mountPath") or "")
            if name not in paths or name not in volumes:
                raise VolumeError(f'cannot find volume "{name}" to mount into container '
                                  f'"{cname}"', name)
            host = paths[name]
            sub = str(vm.get("subPath") or "")
            if sub:
                host = _sub_path(host, sub, name)
            read_only = bool(vm.get("readOnly")) or volume_source(volumes[name]) in (
                API_DATA_SOURCES)
            out.append(Mount(host_path=host, container_path=mount_path, read_only=read_only))
            if os.path.normpath(mount_path) == ETC_HOSTS_PATH:
                mounts_hosts = True
        ips = pod_ips_of(pod)
        if ips and not mounts_hosts:
            out.append(Mount(host_path=self.write_hosts(pod, ips),
                             container_path=ETC_HOSTS_PATH, read_only=False))
        return out

    def write_hosts(self, pod: Obj, ips: list[str]) -> str:
        """Write pods/<uid>/etc-hosts (upstream ensureHostsFile) and return its path."""
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        pod_dir = self.pod_dir(str(md.get("uid") or ""))
        pod_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        aliases = spec.get("hostAliases")
        if spec.get("hostNetwork"):
            try:
                node_hosts = Path(self.node_hosts_file).read_bytes()
            except OSError as e:
                raise VolumeError(f"failed to read {self.node_hosts_file}: {e}") from None
            content = (b"# Kubernetes-managed hosts file (host network).\n" + node_hosts
                       + _alias_entries(aliases))
        else:
            domain = ""
            if spec.get("subdomain") and self.cluster_domain:
                domain = f'{spec["subdomain"]}.{md.get("namespace")}.svc.{self.cluster_domain}'
            content = managed_hosts(ips, pod_hostname(pod), domain, aliases)
        path = pod_dir / "etc-hosts"
        tmp = pod_dir / ".etc-hosts.tmp"
        tmp.write_bytes(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return str(path)

    # --- teardown -------------------------------------------------------------------------

    async def teardown(self, pod_uid: str) -> None:
        """Unmount what this manager mounted under the pod's directory and remove it."""
        pod_dir = self.pod_dir(pod_uid)
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]
        for mount_point in sorted(await asyncio.to_thread(_mounts_under, pod_dir), key=len,
                                  reverse=True):
            proc = await asyncio.create_subprocess_exec(
                "umount", mount_point, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise VolumeError(f"UnmountVolume.TearDown failed for {mount_point}: "
                                  f"{err.decode(errors='replace').strip()}")
        await asyncio.to_thread(shutil.rmtree, pod_dir, True)


def _make_empty_dir(target: Path) -> bool:
    """Create an emptyDir (mode 0777, as upstream) unless it exists; whether it is a mount."""
    if not target.exists():
        target.mkdir(parents=True, mode=EMPTY_DIR_MODE)
        os.chmod(target, EMPTY_DIR_MODE)  # mkdir's mode is masked by the umask
    return os.path.ismount(target)


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix):
                    out.append(point)
    except OSError:
        pass
    return out


def _sub_path(volume_path: str, sub: str, volume: str) -> str:
    """upstream's subPath handling: relative, no `..`, created (with the volume's mode) when
    missing, and after following symlinks still inside the volume (a container must not
    reach the host through a symlink it planted)."""
    if os.path.isabs(sub) or ".." in sub.split("/"):
        raise VolumeError(f"unable to provision SubPath `{sub}`: must be a relative path "
                          "without '..'", volume)
    joined = os.path.join(volume_path, sub)
    real_base = os.path.realpath(volume_path)

    def inside() -> str:
        real = os.path.realpath(joined)
        if real != real_base and not real.startswith(real_base.rstrip("/") + "/"):
            raise VolumeError(f"subpath {real!r} not within volume path {real_base!r}", volume)
        return real

    # Checked before anything is created: a symlink the container planted in the volume
    # (`link -> /etc`) must not make the kubelet, as root, create directories on the host.
    # (realpath resolves the existing part and keeps the rest.)
    real = inside()
    if not os.path.lexists(joined):
        try:
            mode = stat.S_IMODE(os.stat(volume_path).st_mode)
            os.makedirs(real, mode=mode, exist_ok=True)
        except OSError as e:
            raise VolumeError(f"failed to mkdir {joined}: {e}", volume) from None
    return inside()  # again: the tree may have changed while it was being created


# --- hostPath ---------------------------------------------------------------------------------


def check_host_path(path: str, path_type: str) -> None:
    """upstream hostpath checkType: what must be at `path` for each hostPath type."""
    if not path or ".." in path.split("/"):
        raise _SourceError(f"invalid HostPath `{path}`: must not contain '..'")
    if path_type == "":
        return
    exists = os.path.lexists(path)

    def is_kind(test: Any) -> bool:
        try:
            return bool(test(os.stat(path).st_mode))
        except OSError:
            return False

    if path_type == "DirectoryOrCreate":
        if not exists:
            os.makedirs(path, mode=0o755, exist_ok=True)
            return
        path_type = "Directory"
    if path_type == "FileOrCreate":
        if not exists:
            try:
                fd = os.open(path, os.O_CREAT | os.O_RDONLY, 0o644)
                os.close(fd)
            except OSError as e:
                raise _SourceError(str(e)) from None
            return
        path_type = "File"
    checks = {
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    if path_type not in checks:
        raise _SourceError(f"{path_type} is an invalid volume type")
    test, what = checks[path_type]
    if not exists:
        if path_type == "Directory":
            raise _SourceError(f"hostPath type check failed: {path} is not a directory")
        raise _SourceError(f"hostPath type check failed: {path} does not exist")
    if not is_kind(test):
        raise _SourceError(f"hostPath type check failed: {path} {what}")
