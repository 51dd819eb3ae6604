"""Certificates for the TLS tests, made with the openssl command at test time.

One test CA signs two server certificates (``server``: CN=localhost, ``renewed``:
CN=renewed.localhost, both valid for localhost and 127.0.0.1) and a client
certificate (CN=alice, O=Example); a second CA signs a client certificate the
server must refuse. Extensions are written out so that clients that check
strictly (Python 3.13's default context) accept them.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_PASSWORD = "s3cret pass"
_LEAF = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
         "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    server: Path
    server_key: Path
    renewed: Path
    renewed_key: Path
    server_key_encrypted: Path
    client: Path
    client_key: Path
    stranger: Path  # a client certificate from another CA
    stranger_key: Path

    def client_context(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
        return context


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "3", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


def _leaf(name: str, subject: str, ca: str, extensions: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(_LEAF + extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", str(zlib.crc32(name.encode()) + 1), "-days", "2", "-out", f"{name}.pem",
             "-extfile", f"{name}.ext", cwd=cwd)


def make_certs(directory: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates (.ci/run installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    _ca("ca", directory)
    _ca("other-ca", directory)
    server_ext = "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    _leaf("server", "/CN=localhost", "ca", server_ext, directory)
    _leaf("renewed", "/CN=renewed.localhost", "ca", server_ext, directory)
    _leaf("client", "/O=Example/CN=alice", "ca", "extendedKeyUsage=clientAuth\n", directory)
    _leaf("stranger", "/CN=mallory", "other-ca", "extendedKeyUsage=clientAuth\n", directory)
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
             "-out", "server-encrypted.key", cwd=directory)
    d = directory
    return Certs(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "renewed.pem", d / "renewed.key",
                 d / "server-encrypted.key", d / "client.pem", d / "client.key", d / "stranger.pem",
                 d / "stranger.key")
