"""Commands of encrypted payloads: make a key, run the codec server for the UI and CLI."""

from __future__ import annotations

import ipaddress
import signal
import threading
from pathlib import Path

import click

from titus_flow.cli.app import Context, cli, pass_context
from titus_flow.cli.process_options import process_options, process_settings
from titus_flow.codec import codec_for, new_key_line
from titus_flow.codec_server import LOOPBACK_HOSTS, CodecServer, ui_origins
from titus_flow.errors import UserError
from titus_flow.telemetry import process_runtime


@cli.command("codec-key")
@click.option("--id", "key_id", help="Key id [default: k<date>-<random>].")
def codec_key(key_id: str | None) -> None:
    """Print a new payload encryption key line, `<id>:<base64 key>`.

    Append it to the key file (keep that file mode 600) on every client, worker
    and agent; the last key of the file encrypts, all of them decrypt.
    """
    click.echo(new_key_line(key_id))


def _is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK_HOSTS or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.command("codec-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [default: setting codec_port].")
@click.option(
    "--cors-origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="Web UI origin allowed to call it from a browser (repeatable)"
    " [default: the embedded UI's, http://127.0.0.1:<ui_port> and http://localhost:<ui_port>].",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding a bearer token that callers must send (Authorization: Bearer ...);"
    " required to bind a non-loopback address.",
)
@process_options
@pass_context
def codec_server(
    ctx: Context,
    host: str,
    port: int | None,
    origins: tuple[str, ...],
    token_file: Path | None,
    metrics_address: str | None,
    log_level: str | None,
) -> None:
    """Serve Temporal's remote codec protocol (POST /encode, /decode) with the key ring.

    Point the Web UI (`temporal server start-dev --ui-codec-endpoint URL`; `titus-flow
    up` does it when a key ring is configured) or the CLI (`temporal workflow show
    --codec-endpoint URL`) at it to read encrypted payloads. With --metrics-address
    it serves Prometheus /metrics too (titus_flow_process_info only: it is no
    Temporal worker).
    """
    settings = process_settings(ctx.settings, metrics_address, log_level)
    codec = codec_for(settings)
    if codec is None:
        raise UserError(
            "no key ring: set codec_key_file (TITUS_FLOW_CODEC_KEY_FILE) or codec_keys"
            " (TITUS_FLOW_CODEC_KEYS); make a key with `titus-flow codec-key`"
        )
    token = token_file.read_text().strip() if token_file else None
    if token_file is not None and not token:
        raise UserError(f"--token-file {token_file}: the file is empty")
    if not _is_loopback(host) and token is None:
        raise UserError(
            f"--host {host} is not loopback: anyone who reaches it could decrypt every"
            " payload; give --token-file (and put TLS in front of it)"
        )
    try:
        server = CodecServer(
            codec,
            host,
            settings.codec_port if port is None else port,
            origins=origins or ui_origins(settings.ui_port),
            token=token,
        )
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror}") from err

    process_runtime(settings.metrics_address, "codec")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stopping.set())
    click.echo(f"codec server on {server.url} for key ids {', '.join(codec.ring.ids)}", err=True)
    with server:
        server.start_in_thread()
        stopping.wait()
        server.shutdown()
