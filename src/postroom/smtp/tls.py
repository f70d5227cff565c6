"""TLS client contexts for SMTP connections."""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
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


# Contexts that carry a client certificate, by CA bundle and a digest of the
# certificate and key, so the key is written to disk once per process.
_IDENTITY_CONTEXTS: OrderedDict[
    tuple[str | None, float | None, str], ssl.SSLContext
] = OrderedDict()
_IDENTITY_CACHE_SIZE = 64
_identity_lock = threading.Lock()


def client_context_with_identity(
    ca_bundle: str | None, certificate_pem: str, key_pem: str
) -> ssl.SSLContext:
    """Return a verifying client context that presents a client certificate.

    The certificate and key come from memory (the profile stores them
    encrypted). ``ssl`` loads a key only from a file, so they are written to
    a private file (mode 0600, in /dev/shm when it exists so the key stays
    in memory) that is removed as soon as the context has read it.
    """
    digest = hashlib.sha256(
        certificate_pem.encode() + b"\0" + key_pem.encode()
    ).hexdigest()
    key = (ca_bundle, _mtime(ca_bundle), digest)
    with _identity_lock:
        context = _IDENTITY_CONTEXTS.get(key)
        if context is not None:
            _IDENTITY_CONTEXTS.move_to_end(key)
            return context
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_bundle)
    load_identity(context, certificate_pem, key_pem)
    with _identity_lock:
        _IDENTITY_CONTEXTS[key] = context
        while len(_IDENTITY_CONTEXTS) > _IDENTITY_CACHE_SIZE:
            _IDENTITY_CONTEXTS.popitem(last=False)
    return context


def load_identity(context: ssl.SSLContext, certificate_pem: str, key_pem: str) -> None:
    """Load a PEM certificate chain and key into ``context`` through a private file."""
    directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    # mkstemp creates the file with mode 0600, readable by this user only.
    fd, path = tempfile.mkstemp(
        prefix="postroom-identity-", suffix=".pem", dir=directory
    )
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(certificate_pem.rstrip("\n") + "\n" + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
