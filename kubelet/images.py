"""Images: make sure a container's image is on the node before the kubelet creates it.

Upstream's kubelet decides with the container's `imagePullPolicy` whether to pull (Always),
pull only if absent (IfNotPresent) or never pull (Never), reports every step as an event
(Pulling, Pulled, Failed, BackOff) and, when pulls fail, backs off per pod and image, so that a
pod whose image does not exist shows `ErrImagePull` and then `ImagePullBackOff` instead of
hammering a registry. This module is that logic (pkg/kubelet/images/image_manager.go), with the
same event reasons and messages, over DockerRuntime's `image_id` and `pull`.

tinykube has no registry: its images are built into the local engine, so a pull always fails
(ErrImagePull); pods use tagged local images with the default IfNotPresent policy.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from kubelet.backoff import Backoff
from kubelet.runtime import DockerRuntime, RuntimeFailure

Obj = dict[str, Any]
Recorder = Callable[[Obj, str, str, str], None]  # (pod, type, reason, message)

NORMAL, WARNING = "Normal", "Warning"

# The reasons a container waits with (upstream's pkg/kubelet/images/types.go).
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACKOFF = "ImagePullBackOff"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
INVALID_IMAGE_NAME = "InvalidImageName"
IMAGE_INSPECT_ERROR = "ImageInspectError"

# The distribution/reference grammar, as upstream parses image names.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_NAME_TOTAL_LENGTH_MAX = 255


class ImageError(Exception):
    """Why a container's image is not there; `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_reference(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; ValueError with docker/distribution's text."""
    m = _REFERENCE.match(image)
    if not m:
        if image and _REFERENCE.match(image.lower()):
            raise ValueError("invalid reference format: repository name must be lowercase")
        raise ValueError("invalid reference format")
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    if len(name) > _NAME_TOTAL_LENGTH_MAX:
        raise ValueError(f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} "
                         "characters")
    if _ANCHORED_HEX64.match(name):
        raise ValueError(f"invalid repository name ({name}), cannot specify 64-byte hexadecimal "
                         "strings")
    return name, tag, digest


def apply_default_tag(image: str) -> str:
    """`busybox` -> `busybox:latest`; a tag or a digest is kept (upstream applyDefaultImageTag)."""
    try:
        _, tag, digest = parse_reference(image)
    except ValueError as e:
        raise ValueError(f'couldn\'t parse image reference "{image}": {e}') from e
    if not tag and not digest:
        return f"{image}:latest"
    return image


def default_pull_policy(image: str) -> str:
    """Always for `:latest` or no tag (unless pinned by digest), else IfNotPresent."""
    try:
        _, tag, digest = parse_reference(image)
    except ValueError:
        return "IfNotPresent"
    if digest:
        return "IfNotPresent"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def should_pull(policy: str, present: bool) -> bool:
    if policy == "Never":
        return False
    if policy == "Always":
        return True
    return not present  # IfNotPresent


def _go_duration(seconds: float) -> str:
    """A pull time as Go prints a Duration truncated to milliseconds: 523ms, 1.234s, 1m2.5s."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class ImageManager:
    """EnsureImageExists, per container, with events and pull back-off."""

    def __init__(self, runtime: DockerRuntime, record: Recorder, backoff: Backoff,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._record = record
        self._backoff = backoff
        self._clock = clock
        # One pull per image at a time (upstream serialises all pulls by default).
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, pod: Obj, container: Obj, involved: Obj | None = None) -> str:
        """The image id ("sha256:...") of the container's image, pulling it if the policy says
        so. Raises ImageError(reason, message) with upstream's reasons and messages. Events go
        to `involved` (the container's reference, with its fieldPath, as upstream's), else to
        the pod."""
        image = container.get("image") or ""
        on = involved if involved is not None else pod
        try:
            ref = apply_default_tag(image)
        except ValueError as e:
            msg = f'Failed to apply default image tag "{image}": {e}'
            self._record(on, WARNING, "InspectFailed", msg)
            raise ImageError(INVALID_IMAGE_NAME, msg) from e
        policy = container.get("imagePullPolicy") or default_pull_policy(image)
        try:
            image_id = await self._runtime.image_id(ref)
        except RuntimeFailure as e:
            msg = f'Failed to inspect image "{image}": {e}'
            self._record(on, WARNING, "InspectFailed", msg)
            raise ImageError(IMAGE_INSPECT_ERROR, msg) from e
        if not should_pull(policy, image_id is not None):
            if image_id is not None:
                self._record(on, NORMAL, "Pulled",
                             f'Container image "{image}" already present on machine')
                return image_id
            msg = f'Container image "{image}" is not present with pull policy of Never'
            self._record(on, WARNING, ERR_IMAGE_NEVER_PULL, msg)
            raise ImageError(ERR_IMAGE_NEVER_PULL, msg)

        key = f"{(pod.get('metadata') or {}).get('uid', '')}_{image}"
        if self._backoff.in_backoff(key, self._clock()) > 0:
            msg = f'Back-off pulling image "{image}"'
            self._record(on, NORMAL, "BackOff", msg)
            raise ImageError(IMAGE_PULL_BACKOFF, msg)
        self._record(on, NORMAL, "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        try:
            async with self._locks.setdefault(ref, asyncio.Lock()):
                image_id = await self._runtime.pull(ref)
        except RuntimeFailure as e:
            self._record(on, WARNING, "Failed", f'Failed to pull image "{image}": {e}')
            self._backoff.next(key, self._clock())
            raise ImageError(ERR_IMAGE_PULL, str(e)) from e
        self._record(on, NORMAL, "Pulled", f'Successfully pulled image "{image}" in '
                     f"{_go_duration(time.monotonic() - started)}")
        self._backoff.gc(self._clock())
        return image_id
