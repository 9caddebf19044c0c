"""kubelet/images.py: imagePullPolicy, events and pull back-off, against the real Docker engine.

There is no registry here, so every pull fails: that is the ErrImagePull / ImagePullBackOff path.
Present images are tinykube's own (built by the docker_ready fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kubelet.backoff import Backoff
from kubelet.images import (
    ImageError,
    ImageManager,
    _go_duration,
    apply_default_tag,
    default_pull_policy,
    parse_reference,
)
from kubelet.runtime import DockerRuntime

PRESENT = "tinykube/busybox:1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Images:
    def __init__(self, runtime: DockerRuntime) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.clock = Clock()
        self.backoff = Backoff(10, 300)
        self.manager = ImageManager(runtime, self.record, self.backoff, clock=self.clock)

    def record(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    async def ensure(self, image: str, policy: str | None = None,
                     pod: dict[str, Any] | None = None) -> str:
        container: dict[str, Any] = {"name": "c", "image": image}
        if policy:
            container["imagePullPolicy"] = policy
        return await self.manager.ensure(pod or POD, container)

    async def error(self, image: str, policy: str | None = None,
                    pod: dict[str, Any] | None = None) -> ImageError:
        with pytest.raises(ImageError) as e:
            await self.ensure(image, policy, pod)
        return e.value


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"}}


def missing() -> str:
    return f"tinykube-test/missing-{uuid.uuid4().hex[:8]}:1"


@pytest_asyncio.fixture
async def images(docker_ready: None) -> AsyncIterator[Images]:
    rt = DockerRuntime()
    try:
        yield Images(rt)
    finally:
        await rt.close()


# --- pure logic --------------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "policy"), [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("registry:5000/a/b", "Always"),
    ("busybox:1", "IfNotPresent"), ("localhost:5000/x:v2", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_default_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_references() -> None:
    assert apply_default_tag("busybox") == "busybox:latest"
    assert apply_default_tag("registry:5000/busybox") == "registry:5000/busybox:latest"
    assert apply_default_tag("tinykube/busybox:1") == "tinykube/busybox:1"
    assert parse_reference("a.b:5000/c/d_e:v1.2") == ("a.b:5000/c/d_e", "v1.2", "")
    for bad in ("", "Foo Bar", "a:b:c", "-a", "a/", "a:" + "x" * 200):
        with pytest.raises(ValueError, match="invalid reference format"):
            parse_reference(bad)
    with pytest.raises(ValueError, match="must be lowercase"):
        parse_reference("tinykube/BusyBox:1")


def test_go_duration() -> None:
    assert [_go_duration(s) for s in (0.0004, 0.523, 1.2, 1.2345, 62.5)] == \
        ["0ms", "523ms", "1.2s", "1.234s", "1m2.5s"]


# --- against Docker ----------------------------------------------------------------------------


@pytest.mark.docker
async def test_present_image_with_if_not_present_is_not_pulled(images: Images) -> None:
    image_id = await images.ensure(PRESENT, "IfNotPresent")
    assert image_id.startswith("sha256:")
    # no policy: a tagged image defaults to IfNotPresent
    assert await images.ensure(PRESENT) == image_id
    assert images.events == [
        ("Normal", "Pulled", f'Container image "{PRESENT}" already present on machine')] * 2


@pytest.mark.docker
async def test_never_pull(images: Images) -> None:
    assert (await images.ensure(PRESENT, "Never")).startswith("sha256:")
    image = missing()
    err = await images.error(image, "Never")
    assert err.reason == "ErrImageNeverPull"
    msg = f'Container image "{image}" is not present with pull policy of Never'
    assert err.message == msg
    assert images.events[-1] == ("Warning", "ErrImageNeverPull", msg)


@pytest.mark.docker
async def test_failed_pull_then_back_off(images: Images) -> None:
    image = missing()
    err = await images.error(image, "IfNotPresent")
    assert err.reason == "ErrImagePull" and err.message
    assert images.events[0] == ("Normal", "Pulling", f'Pulling image "{image}"')
    assert images.events[1][:2] == ("Warning", "Failed")
    assert images.events[1][2] == f'Failed to pull image "{image}": {err.message}'

    # inside the back-off window: no pull, ImagePullBackOff
    images.events.clear()
    images.clock.now += 5
    err = await images.error(image, "IfNotPresent")
    assert (err.reason, err.message) == ("ImagePullBackOff", f'Back-off pulling image "{image}"')
    assert images.events == [("Normal", "BackOff", f'Back-off pulling image "{image}"')]

    # another pod is not in this pod's back-off
    other = {"metadata": {"name": "q", "namespace": "ns", "uid": "uid-2"}}
    assert (await images.error(image, "IfNotPresent", other)).reason == "ErrImagePull"

    # after the window: pulls again, fails again, and the window doubles
    images.clock.now += 6
    assert (await images.error(image, "IfNotPresent")).reason == "ErrImagePull"
    images.clock.now += 15
    assert (await images.error(image, "IfNotPresent")).reason == "ImagePullBackOff"
    images.clock.now += 6
    assert (await images.error(image, "IfNotPresent")).reason == "ErrImagePull"


@pytest.mark.docker
async def test_always_pulls_even_when_present(images: Images) -> None:
    # upstream: Always means a pull; with the image present but no registry the pull fails
    err = await images.error(PRESENT, "Always")
    assert err.reason == "ErrImagePull"
    assert [e[1] for e in images.events] == ["Pulling", "Failed"]


@pytest.mark.docker
async def test_invalid_image_name(images: Images) -> None:
    err = await images.error("Not A Valid Image")
    assert err.reason == "InvalidImageName"
    assert err.message == ('Failed to apply default image tag "Not A Valid Image": couldn\'t '
                           'parse image reference "Not A Valid Image": invalid reference format')
    assert images.events == [("Warning", "InspectFailed", err.message)]
