"""Spot interruption notices, read from the EC2 instance metadata service (IMDSv2).

EC2 announces the end of a spot instance about two minutes ahead at
``/latest/meta-data/spot/instance-action`` (404 until then). An agent started
with ``--spot-notices`` polls it and, on a notice, drains itself: the scheduler
places nothing more there and service jobs move their tasks away within their
disruption budgets, while the fleet launches capacity for what is now pending.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

IMDS_URL = "http://169.254.169.254"
POLL_EVERY = 5.0  # EC2 recommends polling every 5 s
_TOKEN_TTL = "300"


def _fetch_notice(base_url: str, timeout: float) -> str | None:
    """The pending instance action (its JSON text), or None if there is none."""
    token_request = urllib.request.Request(
        f"{base_url}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL},
    )
    with urllib.request.urlopen(token_request, timeout=timeout) as answer:
        token = answer.read().decode()
    notice_request = urllib.request.Request(
        f"{base_url}/latest/meta-data/spot/instance-action",
        headers={"X-aws-ec2-metadata-token": token},
    )
    try:
        with urllib.request.urlopen(notice_request, timeout=timeout) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


async def interruption_notice(base_url: str = IMDS_URL, timeout: float = 2.0) -> str | None:
    """The spot instance action EC2 has scheduled for this instance, or None.

    Example::

        notice = await interruption_notice()  # '{"action": "terminate", "time": "..."}'
    """
    return await asyncio.to_thread(_fetch_notice, base_url, timeout)


async def watch_for_interruption(
    on_notice: Callable[[str], Awaitable[None]],
    stop: asyncio.Event,
    base_url: str = IMDS_URL,
    every: float = POLL_EVERY,
) -> None:
    """Poll for a notice until ``stop`` is set; call ``on_notice`` once when one comes."""
    while not stop.is_set():
        try:
            notice = await interruption_notice(base_url)
        except OSError as err:  # the metadata service is unreachable: try again later
            log.debug("no answer from the instance metadata service: %s", err)
            notice = None
        if notice is not None:
            log.warning("spot interruption notice: %s", notice)
            await on_notice(notice)
            return
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            continue
