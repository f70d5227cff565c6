"""TLS client contexts for SMTP connections."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache


def client_context(
    ca_bundle: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """Return a verifying client context, cached per file and modification time.

    Certificates are always verified, against the system store or against
    ``ca_bundle`` for a company's own CA. There is deliberately no switch to
    turn verification off: a relay with a private CA gets its bundle.
    """
    return _build_context(
        ca_bundle, _mtime(ca_bundle), client_cert, client_key, _mtime(client_cert)
    )


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


@lru_cache(maxsize=64)
def _build_context(
    ca_bundle: str | None,
    _ca_mtime: float | None,
    client_cert: str | None,
    client_key: str | None,
    _cert_mtime: float | None,
) -> ssl.SSLContext:
    # Loading the system CA store takes milliseconds; a worker opening many
    # connections must not pay that each time.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_bundle)
    if client_cert is not None:
        context.load_cert_chain(client_cert, keyfile=client_key)
    return context
