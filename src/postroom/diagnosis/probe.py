"""Probe a server, recommend profile settings, optionally test a login.

The network work is in postroom.smtp.probe. This module checks the request,
ranks the ports that work, picks port, security and auth mechanism, and can
write them to a profile through the normal profile update. A login is
tested only when the caller gives one, and no message is ever sent.

A recommendation of security ``none`` sends the password unencrypted, so
the login test and ``apply`` use one only when the caller sets
``allow_plaintext``. Ports whose STARTTLS failed are never recommended.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from postroom.crypto import SecretBox
from postroom.diagnosis.engine import explain
from postroom.domain import profiles
from postroom.domain.models import AuthMechanism, Profile
from postroom.domain.validation import check_ca_bundle, check_host, check_single_line
from postroom.errors import InvalidInputError
from postroom.smtp.errors import SmtpFailure
from postroom.smtp.probe import (
    DEFAULT_PORTS,
    PortReport,
    ProbeReport,
    ProbeSettings,
    probe_server,
)
from postroom.smtp.session import SmtpSession
from postroom.smtp.settings import ConnectionSettings
from postroom.smtp.transcript import Transcript

MAX_PORTS = 16
MAX_PORT_TIMEOUT = 60.0
MAX_TOTAL_TIMEOUT = 300.0
# The submission port first (RFC 6409), then implicit TLS (RFC 8314), the
# alternative port many providers open, and relay port 25, which hosting
# providers often block.
PORT_PREFERENCE = (587, 465, 2525, 25)
# A certificate that expires sooner than this gets a warning.
EXPIRY_WARNING = timedelta(days=14)


@dataclass(frozen=True)
class ProbeRequest:
    host: str
    ports: tuple[int, ...] = DEFAULT_PORTS
    port_timeout: float = 10.0
    total_timeout: float = 30.0
    ca_bundle: str | None = None
    ehlo_name: str | None = None
    # Set both to test a login on the recommended port.
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    mechanism: str | None = None
    # Let the login test and apply use a port without TLS (security none).
    allow_plaintext: bool = False


def check_probe_request(
    host: str,
    ports: list[int] | None = None,
    port_timeout: float = 10.0,
    total_timeout: float = 30.0,
    ca_bundle: str | None = None,
    ehlo_name: str | None = None,
    login: str | None = None,
    password: str | None = None,
    mechanism: str | None = None,
    allow_plaintext: bool = False,
) -> ProbeRequest:
    """Validate probe input; each error names the field and the fix."""
    host = check_host(host, "host")

    chosen = list(dict.fromkeys(ports)) if ports else list(DEFAULT_PORTS)
    if len(chosen) > MAX_PORTS:
        raise InvalidInputError(
            f"at most {MAX_PORTS} ports per probe, got {len(chosen)}", field="ports"
        )
    for port in chosen:
        if not 1 <= port <= 65535:
            raise InvalidInputError(
                f"must be between 1 and 65535, got {port}", field="ports"
            )

    if not 0 < port_timeout <= MAX_PORT_TIMEOUT:
        raise InvalidInputError(
            f"must be more than 0 and at most {MAX_PORT_TIMEOUT:g} seconds, got "
            f"{port_timeout:g}",
            field="timeout",
        )
    if not 0 < total_timeout <= MAX_TOTAL_TIMEOUT:
        raise InvalidInputError(
            f"must be more than 0 and at most {MAX_TOTAL_TIMEOUT:g} seconds, got "
            f"{total_timeout:g}",
            field="total_timeout",
        )

    if ca_bundle is not None:
        check_ca_bundle(ca_bundle, "ca_bundle")
    if ehlo_name is not None:
        ehlo_name = check_host(ehlo_name, "ehlo_name")

    if login is not None:
        login = check_single_line(login.strip(), "login") or None
    if bool(login) != bool(password):
        missing = "password" if login else "login"
        raise InvalidInputError(
            "login and password must be given together to test a login, or neither",
            field=missing,
        )
    if mechanism is not None and mechanism not in {m.value for m in AuthMechanism}:
        raise InvalidInputError(
            f"unknown auth mechanism {mechanism!r}; choose one of "
            f"{', '.join(m.value for m in AuthMechanism)}",
            field="mechanism",
        )
    return ProbeRequest(
        host=host,
        ports=tuple(chosen),
        port_timeout=port_timeout,
        total_timeout=total_timeout,
        ca_bundle=ca_bundle,
        ehlo_name=ehlo_name,
        login=login,
        password=password,
        mechanism=mechanism,
        allow_plaintext=allow_plaintext,
    )


@dataclass
class Recommendation:
    """The profile settings the probe proposes, with the reasons."""

    host: str
    port: int
    security: str
    # None when the server offers no AUTH on that port.
    mechanism: str | None
    offered: list[str]
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "mechanism": self.mechanism,
            "offered": self.offered,
            "reasons": self.reasons,
            "warnings": self.warnings,
        }


@dataclass
class LoginTest:
    ok: bool
    port: int
    security: str
    mechanism: str
    diagnosis: dict[str, Any] | None = None
    transcript: list[str] = field(default_factory=list)
    # False when the test was not run, so no credentials were sent.
    tested: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tested": self.tested,
            "port": self.port,
            "security": self.security,
            "mechanism": self.mechanism,
            "diagnosis": self.diagnosis,
            "transcript": self.transcript,
        }


@dataclass
class ProbeResult:
    report: ProbeReport
    recommendation: Recommendation | None
    login: LoginTest | None = None
    applied_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.report.as_dict(),
            "recommendation": (
                self.recommendation.as_dict() if self.recommendation else None
            ),
            "login": self.login.as_dict() if self.login else None,
            "applied_to": self.applied_to,
        }


def choose_mechanism(offered: list[str], encrypted: bool) -> str | None:
    """Map offered SASL names to the profile's auth mechanism label."""
    names = {name.upper() for name in offered}
    # Without TLS, CRAM-MD5 keeps the password off the wire; with TLS,
    # PLAIN or LOGIN is as safe and more widely accepted.
    if not encrypted and "CRAM-MD5" in names:
        return AuthMechanism.CRAM_MD5.value
    if names & {"PLAIN", "LOGIN"}:
        return AuthMechanism.USER_PASSWORD.value
    for sasl_name, label in (
        ("CRAM-MD5", AuthMechanism.CRAM_MD5),
        ("XOAUTH2", AuthMechanism.XOAUTH2),
        ("NTLM", AuthMechanism.NTLM),
        ("GSSAPI", AuthMechanism.KERBEROS),
    ):
        if sasl_name in names:
            return label.value
    return None


def _rank(port: PortReport, position: int) -> tuple[int, int, int, int]:
    encrypted = port.tls is not None
    mechanism = choose_mechanism(port.auth_offered, encrypted)
    trusted = port.tls is not None and port.tls.trusted
    preference = (
        PORT_PREFERENCE.index(port.port)
        if port.port in PORT_PREFERENCE
        else len(PORT_PREFERENCE) + position
    )
    # Sorted ascending: TLS first, then AUTH offered, then a trusted
    # certificate, then the usual port order.
    return (not encrypted, mechanism is None, not trusted, preference)


def recommend(report: ProbeReport) -> Recommendation | None:
    """Pick the best usable port and the settings to reach it."""
    usable = [
        (position, port) for position, port in enumerate(report.ports) if port.usable
    ]
    if not usable:
        return None
    _position, best = min(usable, key=lambda item: _rank(item[1], item[0]))
    encrypted = best.tls is not None
    offered = best.auth_offered
    mechanism = choose_mechanism(offered, encrypted)
    recommendation = Recommendation(
        host=report.host,
        port=best.port,
        security=best.security,
        mechanism=mechanism,
        offered=offered,
    )
    reasons, warnings = recommendation.reasons, recommendation.warnings

    if best.security == "tls":
        reasons.append(f"port {best.port} speaks implicit TLS")
    elif best.security == "starttls":
        reasons.append(f"port {best.port} offers STARTTLS")
    else:
        tls_failed = any(port.error_kind == "tls" for port in report.ports)
        headline = "no port offers TLS"
        if tls_failed:
            headline = "no usable port has working TLS"
        warnings.append(
            f"{headline}: the password and messages would cross the network "
            "unencrypted; use security none only on a trusted network (the login "
            "test and apply need allow_plaintext for it)"
        )
    for port in report.ports:
        if port.error_kind == "tls":
            warnings.append(
                f"port {port.port} offers TLS but it failed ({port.error}); a "
                "device between Postroom and the server may be blocking TLS, so "
                "the port is not recommended, with or without TLS"
            )
    if mechanism is not None:
        where = "after TLS" if encrypted else "without TLS"
        reasons.append(
            f"AUTH {where} offers {', '.join(offered)}, so the auth mechanism is "
            f"{mechanism}"
        )
    else:
        warnings.append(
            f"the server offers no AUTH on port {best.port}: it accepts mail "
            "without a login only from allowed IP addresses or for its own "
            "domains, so leave the profile's login empty"
        )
    if best.tls is not None and not best.tls.trusted:
        warnings.append(
            f"the certificate on port {best.port} is not trusted "
            f"({best.tls.verify_error}); set ca_bundle to the CA that issued it, "
            "or ask the provider to fix the certificate"
        )
    certificate = best.tls.certificate if best.tls else None
    if certificate is not None:
        expires = datetime.fromisoformat(str(certificate["not_after"]))
        if expires - datetime.now(UTC) < EXPIRY_WARNING:
            warnings.append(
                f"the certificate on port {best.port} expires on "
                f"{expires.date().isoformat()}"
            )
    if best.port == 25:
        warnings.append(
            "port 25 is meant for server-to-server relay and many hosting "
            "providers block it for outgoing connections"
        )
    return recommendation


def _login_not_tested(
    request: ProbeRequest, recommendation: Recommendation
) -> LoginTest:
    return LoginTest(
        ok=False,
        tested=False,
        port=recommendation.port,
        security=recommendation.security,
        mechanism=request.mechanism or recommendation.mechanism or "",
        diagnosis={
            "id": "login-not-tested-without-tls",
            "cause": f"The recommended port {recommendation.port} has no working "
            "TLS, so the login was not tested: it would send the password "
            "unencrypted.",
            "fix": "Probe a port that offers TLS, or set allow_plaintext "
            "(--allow-plaintext) if the network to the server is trusted.",
        },
    )


async def _test_login(
    request: ProbeRequest, recommendation: Recommendation
) -> LoginTest:
    mechanism = (
        request.mechanism
        or recommendation.mechanism
        or AuthMechanism.USER_PASSWORD.value
    )
    settings = ConnectionSettings(
        host=request.host,
        port=recommendation.port,
        security=recommendation.security,
        login=request.login,
        password=request.password,
        mechanism=mechanism,
        ehlo_name=request.ehlo_name,
        ca_bundle=request.ca_bundle,
        connect_timeout=request.port_timeout,
        command_timeout=request.port_timeout,
    )
    transcript = Transcript()
    session = SmtpSession(settings, transcript)
    test = LoginTest(
        ok=False,
        port=recommendation.port,
        security=recommendation.security,
        mechanism=mechanism,
    )
    try:
        await session.open(authenticate=False)
        if settings.security == "none" and "starttls" in session.extensions:
            # The probe saw no working TLS on this port a moment ago; a server
            # that offers STARTTLS now must not get the password in clear.
            test.tested = False
            test.diagnosis = {
                "id": "starttls-offered-at-login",
                "cause": f"Port {recommendation.port} offered STARTTLS on the login "
                "test's connection but not during the probe, so the login was not "
                "sent unencrypted.",
                "fix": "Run the probe again; if it keeps changing, ask the "
                "server's administrator why.",
            }
        else:
            await session.authenticate()
            test.ok = session.authenticated
    except SmtpFailure as failure:
        test.diagnosis = explain(failure, settings).as_dict()
    finally:
        await session.close()
    test.transcript = transcript.render()
    return test


async def run_probe(request: ProbeRequest) -> ProbeResult:
    """Probe the server, recommend settings and test the login if one is given."""
    started = asyncio.get_running_loop().time()
    report = await probe_server(
        ProbeSettings(
            host=request.host,
            ports=request.ports,
            port_timeout=request.port_timeout,
            total_timeout=request.total_timeout,
            ca_bundle=request.ca_bundle,
            ehlo_name=request.ehlo_name,
        )
    )
    result = ProbeResult(report=report, recommendation=recommend(report))
    if (
        request.login
        and result.recommendation is not None
        and result.recommendation.security == "none"
        and not request.allow_plaintext
    ):
        result.login = _login_not_tested(request, result.recommendation)
    elif request.login and result.recommendation is not None:
        spent = asyncio.get_running_loop().time() - started
        remaining = max(request.total_timeout - spent, 0.1)
        try:
            async with asyncio.timeout(remaining):
                result.login = await _test_login(request, result.recommendation)
        except TimeoutError:
            result.login = LoginTest(
                ok=False,
                port=result.recommendation.port,
                security=result.recommendation.security,
                mechanism=request.mechanism or result.recommendation.mechanism or "",
                diagnosis={
                    "id": "timeout",
                    "cause": "The login test did not finish within the probe's "
                    f"total time of {request.total_timeout:g} s.",
                },
            )
    return result


def apply_error(
    result: ProbeResult, profile_name: str, allow_plaintext: bool
) -> str | None:
    """Return why the recommendation cannot be written to the profile, or None."""
    recommendation = result.recommendation
    if recommendation is None:
        return (
            f"no usable port on {result.report.host}; profile {profile_name!r} was "
            "not changed"
        )
    if recommendation.security == "none" and not allow_plaintext:
        return (
            f"the recommended port {recommendation.port} has no working TLS, and "
            f"security none would send the password unencrypted; profile "
            f"{profile_name!r} was not changed (set allow_plaintext, or "
            "--allow-plaintext, to apply it anyway)"
        )
    return None


def apply_recommendation(
    session: Session,
    box: SecretBox,
    profile_name: str,
    recommendation: Recommendation,
    ca_bundle: str | None = None,
) -> Profile:
    """Write host, port, security and mechanism to a profile.

    Goes through the normal profile update, so the same validation applies
    and the stored password stays. The mechanism stays unchanged when the
    server offers no AUTH.
    """
    values: dict[str, Any] = {
        "host": recommendation.host,
        "port": recommendation.port,
        "security": recommendation.security,
    }
    if recommendation.mechanism is not None:
        values["mechanism"] = recommendation.mechanism
    if ca_bundle is not None:
        values["ca_bundle"] = ca_bundle
    return profiles.update_profile(
        session, box, profile_name, profiles.ProfileInput(**values)
    )
