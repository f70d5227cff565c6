"""SASL GSSAPI (RFC 4752) with Kerberos credentials from a password or a keytab.

python-gssapi is an optional dependency (``postroom[kerberos]``) because it
compiles against libkrb5. Without it a Kerberos profile fails with a
diagnosis that names the package to install.

MIT libkrb5 reads its configuration from the KRB5_CONFIG environment
variable whenever it creates a library context, which is at every GSS-API
call. A profile may name its own krb5.conf, so every call runs on one
dedicated thread that sets KRB5_CONFIG for the call and restores it after.
NOTE: the environment is process-wide; C code in other threads that reads
KRB5_CONFIG at that moment sees the profile's value.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosmtplib

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.mechanisms import exchange
from postroom.smtp.replies import Reply
from postroom.smtp.settings import ConnectionSettings

T = TypeVar("T")

INSTALL_HINT = "pip install 'postroom[kerberos]'"

# MIT's default when KRB5_CONFIG is unset (krb5.conf(5), Debian build).
_DEFAULT_CONFIG = "/etc/krb5.conf"

# Read before the profile's own krb5.conf. With kdc_timesync on (the MIT
# default), a clock that is off lets the KDC exchange succeed, but every
# later step fails with "No Kerberos credentials available" because
# credentials acquired in memory do not keep the KDC's time offset (seen
# with MIT krb5 1.20). With it off, the KDC replies "Clock skew too great"
# at once, which names the cause.
_OVERLAY = "[libdefaults]\n  kdc_timesync = 0\n"

# RFC 4752, 3.1: bit 1 of the first octet means "no security layer".
_NO_SECURITY_LAYER = 0x01

# Seconds a cached credential must still be valid to be reused.
_MIN_LIFETIME = 120

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postroom-kerberos")
_overlay_path: str | None = None
# Credentials by (principal, password digest or keytab, krb5.conf); only the
# Kerberos thread touches this.
_credentials: dict[tuple[str, str, str], Any] = {}


class KeytabError(Exception):
    """libkrb5 could not get a ticket with the keytab; the message is its own."""


class SecurityLayerError(Exception):
    """The server's RFC 4752 security-layer message is invalid or needs a layer."""


@dataclass(frozen=True)
class KerberosOptions:
    """The profile's Kerberos settings, from ``mechanism_options``."""

    service_principal: str | None
    keytab: str | None
    config: str | None

    @classmethod
    def of(cls, settings: ConnectionSettings) -> KerberosOptions:
        options = settings.mechanism_options
        return cls(
            service_principal=options.get("service_principal"),
            keytab=options.get("keytab"),
            config=options.get("config"),
        )


def _overlay() -> str:
    global _overlay_path
    if _overlay_path is None:
        fd, path = tempfile.mkstemp(prefix="postroom-krb5-", suffix=".conf")
        with os.fdopen(fd, "w") as stream:
            stream.write(_OVERLAY)
        atexit.register(os.unlink, path)
        _overlay_path = path
    return _overlay_path


async def _call(config: str | None, function: Callable[..., T], *args: Any) -> T:
    """Run one libkrb5 call on the Kerberos thread with the profile's krb5.conf."""

    def run() -> T:
        previous = os.environ.get("KRB5_CONFIG")
        base = config or previous or _DEFAULT_CONFIG
        os.environ["KRB5_CONFIG"] = f"{_overlay()}:{base}"
        try:
            return function(*args)
        finally:
            if previous is None:
                del os.environ["KRB5_CONFIG"]
            else:
                os.environ["KRB5_CONFIG"] = previous

    return await asyncio.get_running_loop().run_in_executor(_executor, run)


def _import_gssapi() -> Any:
    try:
        import gssapi
        import gssapi.raw
        import krb5  # noqa: F401  (keytab logins)
    except ImportError as exc:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.UNSUPPORTED,
            error="Kerberos needs python-gssapi and krb5, which are not installed "
            f"({INSTALL_HINT})",
            details={"missing_package": "gssapi, krb5"},
        ) from exc
    return gssapi


def minor_message(error: Exception) -> str:
    """Return the Kerberos library's own words from a GSSError."""
    text = str(error)
    match = re.search(r"Minor \(\d+\): (.*)$", text, re.DOTALL)
    return (match.group(1) if match else text).strip()


def _failure(stage: str, error: Exception, **details: Any) -> SmtpFailure:
    message = minor_message(error)
    subject = {
        "credentials": f"getting Kerberos credentials for {details['principal']}",
        "service ticket": f"getting a Kerberos ticket for {details['service_principal']}",
    }.get(stage, f"Kerberos {stage}")
    return SmtpFailure(
        step=Step.AUTH,
        kind=ErrorKind.AUTH_CLIENT,
        error=f"{subject} failed: {message}",
        details={"kerberos_stage": stage, "kerberos_error": message, **details},
    )


def _acquire(
    gssapi: Any, principal: str, password: str | None, options: KerberosOptions
) -> Any:
    """Get initiator credentials in memory; runs on the Kerberos thread."""
    if options.keytab:
        key = (principal, "keytab:" + options.keytab, options.config or "")
    else:
        digest = hashlib.sha256((password or "").encode()).hexdigest()
        key = (principal, "password:" + digest, options.config or "")
    cached = _credentials.get(key)
    if cached is not None:
        try:
            if cached.lifetime is None or cached.lifetime > _MIN_LIFETIME:
                return cached
        except gssapi.exceptions.GSSError:
            pass
        del _credentials[key]

    name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
    if options.keytab:
        credentials = gssapi.Credentials(
            usage="initiate",
            store={"ccache": _keytab_ticket(principal, options.keytab)},
        )
    else:
        acquired = gssapi.raw.acquire_cred_with_password(
            name, (password or "").encode(), usage="initiate"
        )
        credentials = gssapi.Credentials(acquired.creds)
    _credentials[key] = credentials
    return credentials


def _keytab_ticket(principal: str, keytab: str) -> str:
    """Get a ticket-granting ticket from a keytab into a new memory cache.

    Returns the cache's name. GSS-API could read the keytab itself, but when
    the keytab lacks the principal MIT then reports only "No credentials
    cache found", while libkrb5's own call names the keytab problem.
    """
    import krb5

    context = krb5.init_context()
    client = krb5.parse_name_flags(context, principal.encode())
    table = krb5.kt_resolve(context, f"FILE:{keytab}".encode())
    options = krb5.get_init_creds_opt_alloc(context)
    try:
        creds = krb5.get_init_creds_keytab(context, client, options, table)
    except krb5.Krb5Error as exc:
        # The text ends with libkrb5's numeric error code.
        raise KeytabError(re.sub(r"\s+-?\d+$", "", str(exc))) from exc
    # MIT keeps a memory cache, by name, until it is destroyed.
    cache = krb5.cc_new_unique(context, b"MEMORY")
    krb5.cc_initialize(context, cache, client)
    krb5.cc_store_cred(context, cache, creds)
    return "MEMORY:" + (cache.name or b"").decode()


def _target(gssapi: Any, settings: ConnectionSettings, options: KerberosOptions) -> Any:
    if options.service_principal:
        return gssapi.Name(
            options.service_principal, gssapi.NameType.kerberos_principal
        )
    # NOTE: MIT Kerberos may canonicalize the host through DNS first
    # (dns_canonicalize_hostname), so for an alias the ticket can be for
    # smtp/<canonical name> while service_principal() names the alias.
    return gssapi.Name(f"smtp@{settings.host}", gssapi.NameType.hostbased_service)


def service_principal(settings: ConnectionSettings) -> str:
    """Return the service principal as an operator writes it."""
    options = KerberosOptions.of(settings)
    return options.service_principal or f"smtp/{settings.host}"


async def authenticate(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    gssapi = _import_gssapi()
    options = KerberosOptions.of(settings)
    principal = settings.login or ""
    spn = service_principal(settings)
    facts = {"principal": principal, "service_principal": spn}
    if not options.keytab and not settings.password:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.AUTH_CLIENT,
            error="Kerberos needs a password or a keytab, and the profile has neither",
            details={"kerberos_stage": "credentials", **facts},
        )

    try:
        credentials = await _call(
            options.config, _acquire, gssapi, principal, settings.password, options
        )
    except (gssapi.exceptions.GSSError, KeytabError) as exc:
        raise _failure("credentials", exc, **facts) from exc

    flags = (
        gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.integrity
    )
    try:
        context = await _call(
            options.config,
            lambda: gssapi.SecurityContext(
                name=_target(gssapi, settings, options),
                creds=credentials,
                usage="initiate",
                flags=flags,
                mech=gssapi.MechType.kerberos,
            ),
        )
        first = await _call(options.config, context.step)
    except gssapi.exceptions.GSSError as exc:
        raise _failure("service ticket", exc, **facts) from exc

    reply = await exchange.begin(client, "GSSAPI", first or b"")
    while reply.code == 334:
        token = exchange.challenge(reply)
        try:
            if not context.complete:
                answer = await _call(options.config, context.step, token)
            else:
                answer = await _call(options.config, _security_layer, context, token)
        except gssapi.exceptions.GSSError as exc:
            raise _failure("mutual authentication", exc, **facts) from exc
        except SecurityLayerError as exc:
            raise SmtpFailure(
                step=Step.AUTH,
                kind=ErrorKind.AUTH_CLIENT,
                error=f"Kerberos security-layer negotiation failed: {exc}",
                details={"kerberos_stage": "security layer", **facts},
            ) from exc
        reply = await exchange.respond(client, answer or b"")

    if reply.code != 235:
        raise SmtpFailure.from_reply(Step.AUTH, reply, **facts)
    return reply


def _security_layer(context: Any, token: bytes) -> bytes:
    """Return the wrapped reply to the server's security-layer offer (RFC 4752, 3.1).

    The server's wrapped message holds a bit mask of the layers it offers and
    its maximum buffer size. SMTP gets its protection from TLS, so Postroom
    always chooses "no security layer" with a maximum size of 0 and no
    authorization identity (act as the authenticated principal).
    """
    offer = context.unwrap(token).message
    if len(offer) != 4:
        raise SecurityLayerError(
            f"the server's security-layer offer has {len(offer)} octets, not 4"
        )
    if not offer[0] & _NO_SECURITY_LAYER:
        raise SecurityLayerError(
            "the server requires a SASL security layer, which Postroom does not "
            "support; use TLS instead"
        )
    choice = bytes([_NO_SECURITY_LAYER, 0, 0, 0])
    return bytes(context.wrap(choice, encrypt=False).message)
