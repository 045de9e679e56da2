"""Images on the engine: whether one is there, and pulling one that is not.

A pull that fails says whether the image is missing for good (the task fails:
:class:`~titus_flow.runtime.base.ImageNotFoundError`) or the pull failed for now
(retried: :class:`~titus_flow.runtime.base.ImagePullError`).
"""

from __future__ import annotations

from typing import Any, Final

import docker.errors

from titus_flow.runtime.base import ImageNotFoundError, ImagePullError

# How registries (through the engine) say an image does not exist. Anything else
# a pull reports (rate limits, 5xx, DNS, expired tokens) may pass with a retry.
_MISSING_IMAGE_MARKERS: Final = (
    "manifest unknown",
    "not found",
    "repository does not exist",
    "name unknown",
)


def says_missing(error: str) -> bool:
    """Whether a pull error says the image does not exist (final), not that the pull failed."""
    lowered = error.lower()
    return any(marker in lowered for marker in _MISSING_IMAGE_MARKERS)


def pull_image(api: Any, image: str) -> None:
    """Pull ``image`` through ``api`` (the low-level client), or say why not.

    :class:`ImageNotFoundError` if the registry says the image does not exist
    (missing for good), :class:`ImagePullError` for any other failure (one that
    may pass).
    """
    errors: list[str] = []
    missing = False
    try:
        # The pull stream reports failures in-band, after a 200 response.
        for event in api.pull(image, stream=True, decode=True):
            if "error" in event:
                errors.append(str(event["error"]))
    except docker.errors.APIError as err:
        # The engine answers 404 when the registry says "manifest unknown" or
        # that the repository does not exist; a 5xx, refused connection, DNS
        # or auth failure comes as another status.
        missing = err.status_code == 404
        errors.append(str(err.explanation or err))
    if not errors and image_exists(api, image):
        return
    reason = "; ".join(errors) or "the pull did not produce it"
    if missing or any(says_missing(error) for error in errors):
        raise ImageNotFoundError(f"image {image!r} not found: {reason}")
    raise ImagePullError(f"image {image!r} could not be pulled (will retry): {reason}")


def image_exists(api: Any, image: str) -> bool:
    """Whether ``image`` is present on the engine behind ``api``."""
    try:
        api.inspect_image(image)
    except docker.errors.NotFound:  # ImageNotFound is a NotFound
        return False
    return True
