"""The options every titus-flow process connects to Temporal with.

One place turns :class:`~titus_flow.config.Settings` (titus-flow's own settings
layered over Temporal's ``temporal.toml`` profile and ``TEMPORAL_*`` variables,
see :mod:`titus_flow.config`) into the keyword arguments of ``Client.connect``,
so a client, a control worker and an agent reach the same server the same way,
and where titus-flow says nothing they reach what the ``temporal`` CLI would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from temporalio.client import TLSConfig

from titus_flow.auth import api_key, tls_config
from titus_flow.config import Settings


class ConnectOptions(TypedDict):
    """Keyword arguments of ``temporalio.client.Client.connect`` about the server.

    The address is :attr:`Settings.address <titus_flow.config.Settings.address>`,
    already resolved through the same layers.
    """

    namespace: str
    api_key: str | None
    tls: bool | TLSConfig
    rpc_metadata: Mapping[str, str]


def connect_options(settings: Settings) -> ConnectOptions:
    """How to connect to ``settings.address``: namespace, API key, TLS and gRPC metadata.

    Reads key and certificate files now (see :mod:`titus_flow.auth`); raises
    :class:`~titus_flow.errors.UserError` when one cannot be read.
    """
    key = api_key(settings)
    return ConnectOptions(
        namespace=settings.namespace,
        api_key=key,
        tls=tls_config(settings, key),
        # TEMPORAL_GRPC_META_* / the profile's grpc_meta, as the Temporal CLI sends them.
        rpc_metadata=dict(settings.temporal_profile.grpc_meta),
    )
