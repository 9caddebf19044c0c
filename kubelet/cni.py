"""The kubelet's side of CNI (what libcni does for upstream's runtimes): find the network config,
exec its plugins for a pod sandbox, remember what was set up.

The kubelet never configures a network itself and never imports the plugin: it runs whatever
executable the config names, per the CNI spec, so any CNI plugin would do. What it must get
right is the protocol around the exec:
- the config: the lexicographically first `*.conflist` / `*.conf` / `*.json` in the conf dir
  that parses (a `.conf` is a one-plugin list), re-read when the directory changes — until one
  appears the node is not Ready ("cni config uninitialized"), as upstream;
- the call: CNI_* environment, the plugin's config on stdin with the list's name and
  cniVersion, `runtimeConfig` for the capabilities it declares (`ipRanges` from the Node's
  podCIDR), `prevResult` chaining from one plugin to the next, a timeout;
- the cache: the ADD result and the exact config used, under `<cache_dir>/results/` like
  libcni's /var/lib/cni/cache/results, so that a DEL after a kubelet restart (or after the
  config changed) tears down with the config the ADD used, and the pod IP of an adopted sandbox
  is known without entering its netns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kubelet.cni")

Obj = dict[str, Any]
NOT_READY = "network plugin is not ready: cni config uninitialized"
CONF_EXTENSIONS = (".conflist", ".conf", ".json")
DEFAULT_IFNAME = "eth0"
CACHE_KIND = "cniCacheV1"


class CNIError(Exception):
    """A plugin failed (its CNI error's code, msg and details), or could not be run."""

    def __init__(self, message: str, *, code: int = 0, details: str = "") -> None:
        super().__init__(message)
        self.code, self.details = code, details


@dataclass
class NetworkConfig:
    """One network configuration list as loaded from a file (or from the result cache)."""

    name: str
    version: str
    plugins: list[Obj]
    raw: bytes
    path: str


def parse_config(data: bytes, path: str) -> NetworkConfig:
    """A conflist, or a single-plugin conf made into a one-plugin list (libcni's
    ConfListFromConf). Raises ValueError saying what is wrong."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no network name")
    version = doc.get("cniVersion") or "0.1.0"
    if "plugins" in doc or path.endswith(".conflist"):
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise ValueError("no plugins in the list")
        if not all(isinstance(p, dict) and isinstance(p.get("type"), str) and p["type"]
                   for p in plugins):
            raise ValueError("every plugin needs a type")
    else:
        if not isinstance(doc.get("type"), str) or not doc["type"]:
            raise ValueError("no plugin type")
        plugins = [{k: v for k, v in doc.items() if k not in ("name", "cniVersion")}]
    return NetworkConfig(name, str(version), plugins, data, path)


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def first_ip(result: Obj) -> str | None:
    for entry in result.get("ips") or []:
        address = str(entry.get("address") or "")
        if address and ":" not in address:
            return address.split("/", 1)[0]
    return None


class CNI:
    """Network setup of pod sandboxes through the CNI plugins of the first config in
    `conf_dir`, found in `bin_dirs`; results cached under `cache_dir`."""

    def __init__(self, conf_dir: str, bin_dirs: list[str], cache_dir: str, *,
                 timeout: float = 60.0, ifname: str = DEFAULT_IFNAME) -> None:
        self.conf_dir = conf_dir
        self.bin_dirs = list(bin_dirs)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.ifname = ifname
        self._signature: tuple[Any, ...] | None = None
        self._config: NetworkConfig | None = None

    # --- the config -----------------------------------------------------------------------

    def _scan(self) -> tuple[Any, ...]:
        """What the conf dir looks like now (names, sizes, mtimes): a reload when it changes."""
        try:
            names = sorted(n for n in os.listdir(self.conf_dir) if n.endswith(CONF_EXTENSIONS))
        except OSError:
            return ()
        out = []
        for n in names:
            try:
                st = os.stat(os.path.join(self.conf_dir, n))
            except OSError:
                continue
            out.append((n, st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def config(self) -> NetworkConfig | None:
        """The network config in use (None: there is none), reloaded when the dir changed."""
        sig = self._scan()
        if sig != self._signature:
            self._signature = sig
            self._config = self._load(sig)
        return self._config

    def _load(self, sig: tuple[Any, ...]) -> NetworkConfig | None:
        for name, *_ in sig:
            path = os.path.join(self.conf_dir, name)
            try:
                with open(path, "rb") as f:
                    conf = parse_config(f.read(), path)
            except (OSError, ValueError) as e:
                log.warning("CNI config %s skipped: %s", path, e)
                continue
            log.info("using CNI config %s (network %s)", path, conf.name)
            return conf
        return None

    def not_ready_reason(self) -> str | None:
        return None if self.config() is not None else NOT_READY

    # --- the result cache -----------------------------------------------------------------

    def _cache_path(self, network: str, container_id: str) -> str:
        return os.path.join(self.cache_dir, "results",
                            f"{network}-{container_id}-{self.ifname}")

    def _find_cache(self, container_id: str) -> Obj | None:
        """The cached ADD of this container, whichever network it was made in."""
        d = os.path.join(self.cache_dir, "results")
        suffix = f"-{container_id}-{self.ifname}"
        try:
            names = [n for n in os.listdir(d) if n.endswith(suffix)]
        except OSError:
            return None
        for n in sorted(names):
            try:
                with open(os.path.join(d, n)) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("containerId") == container_id:
                return doc
        return None

    def _write_cache(self, conf: NetworkConfig, container_id: str, cni_args: list[list[str]],
                     caps: Obj, result: Obj) -> None:
        path = self._cache_path(conf.name, container_id)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        doc = {"kind": CACHE_KIND, "containerId": container_id,
               "config": base64.b64encode(conf.raw).decode(), "ifName": self.ifname,
               "networkName": conf.name, "cniArgs": cni_args, "capabilityArgs": caps,
               "result": result}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def cached_ip(self, container_id: str) -> str | None:
        doc = self._find_cache(container_id)
        result = (doc or {}).get("result")
        return first_ip(result) if isinstance(result, dict) else None

    # --- exec -----------------------------------------------------------------------------

    def _find_plugin(self, plugin_type: str) -> str:
        for d in self.bin_dirs:
            path = os.path.join(d, plugin_type)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise CNIError(f'failed to find plugin "{plugin_type}" in path {self.bin_dirs}')

    @staticmethod
    def _cni_args(pod: Obj, container_id: str) -> list[list[str]]:
        md = pod.get("metadata") or {}
        return [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", md.get("namespace", "")],
                ["K8S_POD_NAME", md.get("name", "")],
                ["K8S_POD_INFRA_CONTAINER_ID", container_id], ["K8S_POD_UID", md.get("uid", "")]]

    async def _exec(self, command: str, conf: NetworkConfig, plugin: Obj, *, container_id: str,
                    netns: str, cni_args: list[list[str]], caps: Obj,
                    prev: Obj | None) -> Obj | None:
        """Run one plugin of the list; its result (ADD) or None."""
        body = {k: v for k, v in plugin.items() if k != "runtimeConfig"}
        body["name"], body["cniVersion"] = conf.name, conf.version
        runtime = {cap: caps[cap] for cap, on in (plugin.get("capabilities") or {}).items()
                   if on and cap in caps}
        if runtime:
            body["runtimeConfig"] = runtime
        if prev is not None:
            body["prevResult"] = prev
        ptype = str(plugin["type"])
        path = self._find_plugin(ptype)
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
               "CNI_NETNS": netns, "CNI_IFNAME": self.ifname,
               "CNI_ARGS": ";".join(f"{k}={v}" for k, v in cni_args),
               "CNI_PATH": os.pathsep.join(self.bin_dirs)}
        what = f'plugin type="{ptype}" name="{conf.name}" failed ({command.lower()})'
        try:
            proc = await asyncio.create_subprocess_exec(
                path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
        except OSError as e:
            raise CNIError(f"{what}: {e}") from None
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: see kubelet/prober.py
                out, err = await proc.communicate(json.dumps(body).encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise CNIError(f"{what}: timed out after {self.timeout:g}s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if proc.returncode != 0:
            try:
                doc = json.loads(out)
                msg, code = str(doc.get("msg") or ""), int(doc.get("code") or 0)
                details = str(doc.get("details") or "")
            except (ValueError, AttributeError, TypeError):
                msg, code, details = "", 0, ""
            if not msg:
                text = (err or out).decode(errors="replace").strip()
                msg = f"exit status {proc.returncode}" + (f": {text}" if text else "")
            raise CNIError(f"{what}: {msg}", code=code, details=details)
        if command != "ADD":
            return None
        try:
            result = json.loads(out)
        except ValueError as e:
            raise CNIError(f"{what}: the result is not JSON: {e}") from None
        if not isinstance(result, dict):
            raise CNIError(f"{what}: the result is not a JSON object")
        return result

    # --- ADD / DEL / CHECK ----------------------------------------------------------------

    async def add(self, container_id: str, netns: str, pod: Obj, pod_cidr: str | None) -> str:
        """Set up the sandbox's network; its IP. On failure what was set up is torn down."""
        conf = self.config()
        if conf is None:
            raise CNIError(NOT_READY)
        cni_args = self._cni_args(pod, container_id)
        caps: Obj = {"ipRanges": [[{"subnet": pod_cidr}]]} if pod_cidr else {}
        result: Obj | None = None
        try:
            for plugin in conf.plugins:
                result = await self._exec("ADD", conf, plugin, container_id=container_id,
                                          netns=netns, cni_args=cni_args, caps=caps,
                                          prev=result)
        except BaseException:
            with contextlib.suppress(CNIError, OSError):
                await self._delete_with(conf, container_id, netns, cni_args, caps, None)
            raise
        ip = first_ip(result or {})
        if ip is None:
            with contextlib.suppress(CNIError, OSError):
                await self._delete_with(conf, container_id, netns, cni_args, caps, result)
            raise CNIError(f'network "{conf.name}" gave sandbox {container_id[:12]} no IPv4 '
                           "address")
        self._write_cache(conf, container_id, cni_args, caps, result or {})
        return ip

    async def delete(self, container_id: str, netns: str | None, pod: Obj) -> None:
        """Tear the sandbox's network down with the config its ADD used; idempotent."""
        cached = self._find_cache(container_id)
        conf: NetworkConfig | None = None
        caps: Obj = {}
        prev: Obj | None = None
        cni_args = self._cni_args(pod, container_id)
        if cached is not None:
            try:
                conf = parse_config(base64.b64decode(cached.get("config") or ""), "cache")
                caps = cached.get("capabilityArgs") or {}
                prev = cached.get("result") if isinstance(cached.get("result"), dict) else None
                cni_args = cached.get("cniArgs") or cni_args
            except (ValueError, TypeError) as e:
                log.warning("CNI cache of %s unreadable (%s): using the current config",
                            container_id[:12], e)
        if conf is None:
            conf = self.config()
        if conf is None:
            log.info("no CNI config and no cached result for %s: nothing to tear down",
                     container_id[:12])
            return
        await self._delete_with(conf, container_id, netns or "", cni_args, caps, prev)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cache_path(conf.name, container_id))

    async def _delete_with(self, conf: NetworkConfig, container_id: str, netns: str,
                           cni_args: list[list[str]], caps: Obj, prev: Obj | None) -> None:
        chained = prev if _version(conf.version) >= (0, 4, 0) else None
        for plugin in reversed(conf.plugins):
            await self._exec("DEL", conf, plugin, container_id=container_id, netns=netns,
                             cni_args=cni_args, caps=caps, prev=chained)

    async def check(self, container_id: str, netns: str, pod: Obj) -> None:
        """CHECK the sandbox's network against the cached ADD result (CNIError if broken)."""
        cached = self._find_cache(container_id)
        if cached is None:
            raise CNIError(f"no cached CNI result for {container_id[:12]}")
        conf = parse_config(base64.b64decode(cached.get("config") or ""), "cache")
        if _version(conf.version) < (0, 4, 0):
            return
        caps = cached.get("capabilityArgs") or {}
        for plugin in conf.plugins:
            await self._exec("CHECK", conf, plugin, container_id=container_id, netns=netns,
                             cni_args=self._cni_args(pod, container_id), caps=caps,
                             prev=cached.get("result"))
