"""Connecting to Temporal as the settings say, with a bound on how long it takes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import Runtime

from titus_flow.client.query_retry import QueryRetryInterceptor
from titus_flow.codec import codec_for
from titus_flow.config import Settings
from titus_flow.connect_options import connect_options
from titus_flow.converter import client_data_converter
from titus_flow.errors import TLS_HANDSHAKE, ServerUnreachableError, connection_reason

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long connecting to Temporal may take (TCP, TLS and its first answer) before giving up."""


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect to Temporal as ``settings`` say (TLS, API key and payload codec included).

    Queries a starved worker's deadlock detector failed are asked again
    (:mod:`titus_flow.client.query_retry`).

    Gives up after CONNECT_TIMEOUT_SECONDS with :class:`ServerUnreachableError`.
    ``runtime``: the Temporal runtime to use (default: the process's default one).
    """
    options = connect_options(settings)
    connecting = Client.connect(
        settings.address,
        **options,
        data_converter=client_data_converter(codec_for(settings)),
        interceptors=[QueryRetryInterceptor()],
        connect_timeout=timedelta(seconds=CONNECT_TIMEOUT_SECONDS),
        runtime=runtime,
    )
    try:
        # The bound also covers a server that accepts connections but never answers.
        return await asyncio.wait_for(connecting, CONNECT_TIMEOUT_SECONDS)
    except (RuntimeError, TimeoutError) as err:
        reason = connection_reason(str(err) or "timeout expired")
        if options["tls"] is not False and reason == "connection lost":
            # In TLS 1.3 a server that refuses the client's certificate (or its lack) does so
            # after the client has finished its side of the handshake, and hangs up.
            reason = f"connection closed right after the {TLS_HANDSHAKE}"
        raise ServerUnreachableError(settings.address, reason, local=settings.is_embedded) from err
