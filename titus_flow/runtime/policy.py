"""Which images an agent runs: the operator's ``allowed_images`` setting.

Each entry allows images by one of:

* a registry, ``host[:port]`` (``docker.io`` for bare names such as ``busybox``):
  ``registry.example.com``, ``127.0.0.1:5000``;
* a repository prefix ending in ``/``: ``ghcr.io/my-org/``;
* a repository, the image without tag or digest: ``127.0.0.1:5000/busybox``;
* a digest: ``sha256:<64 hex>``, which the image must be pinned to (``name@sha256:...``).

An empty list allows every image.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_REGISTRY = "docker.io"


def split_image(image: str) -> tuple[str, str, str | None]:
    """``(registry, repository, digest)`` of an image reference.

    The repository is the name as written, without tag or digest.

    Example::

        split_image("127.0.0.1:5000/app:1")  # ("127.0.0.1:5000", "127.0.0.1:5000/app", None)
    """
    name, _, digest = image.partition("@")
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry = first
    else:
        registry = DEFAULT_REGISTRY
    last = name.rsplit("/", 1)[-1]
    if ":" in last:  # a tag (a port can only be in the first component)
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return registry, name, digest or None


def image_refusal(image: str, allowed: Sequence[str]) -> str | None:
    """Why ``image`` may not run under ``allowed``; None when it may."""
    if not allowed:
        return None
    registry, repository, digest = split_image(image)
    for entry in allowed:
        if entry.startswith("sha256:"):
            if digest == entry:
                return None
        elif entry.endswith("/"):
            if repository.startswith(entry):
                return None
        elif "/" in entry:
            if repository == entry:
                return None
        elif registry == entry:
            return None
    return (
        f"image {image!r} is not allowed on this agent: it runs only images matching"
        f" {', '.join(allowed)} (the operator's allowed_images setting)"
    )
