"""TLS test certificates: one CA signs one certificate (SAN 127.0.0.1) that both ends use.

They satisfy the strict X.509 checks of Python 3.13's default context (VERIFY_X509_STRICT):
the CA has a critical keyUsage, the certificate an authority key identifier.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_certs(d: Path) -> None:
    """Write ca.crt/ca.key and peer.crt/peer.key into ``d`` (skip the test if openssl is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make TLS test certificates")
    d.mkdir(exist_ok=True)
    (d / "peer.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    for cmd in (
        f"req -x509 -newkey rsa:2048 -nodes -keyout {d}/ca.key -out {d}/ca.crt -days 2 -subj /CN=addrbus-test-ca"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        f"req -newkey rsa:2048 -nodes -keyout {d}/peer.key -out {d}/peer.csr -subj /CN=localhost",
        f"x509 -req -in {d}/peer.csr -CA {d}/ca.crt -CAkey {d}/ca.key -CAcreateserial"
        f" -out {d}/peer.crt -days 2 -extfile {d}/peer.cnf",
    ):
        subprocess.run(["openssl", *cmd.split()], check=True, capture_output=True)
