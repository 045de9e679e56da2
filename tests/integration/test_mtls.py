"""mTLS to Temporal through a real TLS handshake (issue 12, authenticated platform traffic).

The dev server has no TLS, so a TLS-terminating proxy (``tls_proxy.TlsProxy``) that
requires a client certificate sits in front of the session's dev server. Each test
makes a throwaway CA, a server certificate for 127.0.0.1/localhost and client
certificates, and sets them the way a user does (``TITUS_FLOW_TLS_CERT``,
``TITUS_FLOW_TLS_KEY``, ``TITUS_FLOW_TLS_CA``):

- with the right client certificate the Python client, the CLI and a control worker
  work through the proxy;
- without one, with one from another CA, or trusting another CA than the server's,
  the CLI exits 1 with one line naming the address and what to check.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from titus_cluster import Cluster
from tls_proxy import TlsProxy

from titus_flow.client import TitusClient
from titus_flow.config import load_settings
from titus_flow.errors import TLS_ADVICE
from titus_flow.processes import wait_until

CLIENT_NAME = "titus-flow-test-client"


# -- a throwaway PKI --------------------------------------------------------------------


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _make_ca(directory: Path, name: str) -> tuple[_Issuer, Path]:
    """A self-signed CA; its certificate written to ``directory/<name>.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(subject, key), _write_cert(cert, directory / f"{name}.pem")


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates; a leaf (server or client) signs its handshakes."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(issuer: _Issuer, directory: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    """A leaf certificate and its key, signed by ``issuer``: (cert path, key path).

    A server certificate is for 127.0.0.1 and localhost; a client certificate has
    ``name`` as its common name.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, issuer.name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(issuer.key, hashes.SHA256())
    return (
        _write_cert(cert, directory / f"{name}.pem"),
        _write_key(key, directory / f"{name}.key"),
    )


@dataclass(frozen=True)
class Pki:
    """The files a test needs, all in its tmp_path."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A second CA, trusted by nobody here."""
    other_client_cert: Path
    other_client_key: Path
    """A client certificate and key signed by ``other_ca``."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, ca_path = _make_ca(directory, "test-ca")
    other, other_path = _make_ca(directory, "other-ca")
    server_cert, server_key = _issue(ca, directory, "server", server=True)
    client_cert, client_key = _issue(ca, directory, CLIENT_NAME, server=False)
    other_cert, other_key = _issue(other, directory, "intruder", server=False)
    return Pki(
        ca_path, server_cert, server_key, client_cert, client_key, other_path, other_cert, other_key
    )


@pytest.fixture
def proxy(dev_server: str, pki: Pki) -> Iterator[TlsProxy]:
    """mTLS in front of the session's dev server, requiring a client cert from ``pki.ca``."""
    with TlsProxy(
        dev_server, cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca
    ) as started:
        yield started
    # Nothing left behind: the thread has ended and the port is closed.
    assert not [t for t in threading.enumerate() if t.name == "tls-proxy"]
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", int(started.address.rpartition(":")[2])), timeout=5),
    ):
        pass


def _tls_env(cert: Path | None, key: Path | None, ca: Path) -> dict[str, str]:
    """The variables a user sets for mTLS with a private CA."""
    env = {"TITUS_FLOW_TLS_CA": str(ca)}
    if cert is not None and key is not None:
        env.update(TITUS_FLOW_TLS_CERT=str(cert), TITUS_FLOW_TLS_KEY=str(key))
    return env


# -- the right client certificate ----------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_the_python_client_connects_through_mtls(
    proxy: TlsProxy, pki: Pki, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={
            "TITUS_FLOW_HOME": str(tmp_path / "home"),
            "TITUS_FLOW_ADDRESS": proxy.address,
            **_tls_env(pki.client_cert, pki.client_key, pki.ca),
        }
    )
    client = await TitusClient.connect(settings)
    described = await client.temporal.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.namespace)
    )
    assert described.namespace_info.name == "default"
    assert isinstance(await client.list_jobs(limit=5), list)  # a visibility query
    assert proxy.handshakes, "no TLS handshake reached the proxy"
    assert {h.common_name for h in proxy.handshakes} == {CLIENT_NAME}
    assert {h.alpn for h in proxy.handshakes} == {"h2"}
    assert proxy.refused == []


def test_the_cli_and_a_control_worker_work_through_mtls(
    proxy: TlsProxy, pki: Pki, tmp_path: Path
) -> None:
    cluster = Cluster.create(
        proxy.address,
        tmp_path,
        TITUS_FLOW_SERVER_WAIT_SECONDS="30",
        **_tls_env(pki.client_cert, pki.client_key, pki.ca),
    )
    try:
        listed = cluster.cli("jobs", "list", timeout=60)
        assert listed.returncode == 0, listed.stderr
        # `agents list` queries the scheduler, which the worker starts and serves: both
        # through the proxy, since the proxy is the only address they know.
        cluster.start_worker()
        deadline = time.monotonic() + 60
        while (agents := cluster.cli("agents", "list", timeout=60)).returncode != 0:
            assert time.monotonic() < deadline, f"{agents.stderr}\n{cluster.logs()}"
            time.sleep(1)
        assert "0 agents shown" in agents.stdout
    finally:
        cluster.stop_all()
    assert len(proxy.handshakes) >= 3  # jobs list, the worker, agents list
    assert {h.common_name for h in proxy.handshakes} == {CLIENT_NAME}
    assert proxy.refused == []


# -- a wrong or missing client certificate, or an untrusted server --------------------------


@pytest.mark.parametrize(
    "case", ["no client certificate", "a client certificate of another CA", "another server CA"]
)
def test_a_refused_handshake_is_one_clear_line(
    case: str, proxy: TlsProxy, pki: Pki, tmp_path: Path
) -> None:
    env = {
        "no client certificate": _tls_env(None, None, pki.ca),
        "a client certificate of another CA": _tls_env(
            pki.other_client_cert, pki.other_client_key, pki.ca
        ),
        # The client's certificate is good, but it trusts only a CA that did not sign
        # the server's certificate: the client refuses the server.
        "another server CA": _tls_env(pki.client_cert, pki.client_key, pki.other_ca),
    }[case]
    cluster = Cluster.create(proxy.address, tmp_path, **env)
    result = cluster.cli("jobs", "list", timeout=60)
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr
    assert line.startswith(f"error: cannot reach Temporal at {proxy.address} ("), line
    assert TLS_ADVICE in line, line
    assert "titus-flow up" not in line  # the server is up: its address answered
    assert proxy.handshakes == []
    # The proxy's thread notes the refusal as the client goes: on a loaded
    # machine that can be after the CLI exited.
    assert wait_until(lambda: bool(proxy.refused), 10), "the proxy saw no refused handshake"
