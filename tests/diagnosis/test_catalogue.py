"""Every catalogue entry, reproduced against a real server that fails that way.

Each case starts a loopback server scripted with the provider's own reply
wording, or a real TLS, DNS or network condition, and sends a test email
through it. The test checks the step, the reply and enhanced status codes,
the entry id, whether retrying can help, and that the fix names the setting
to change. Cases with a server reply also paste that reply into the text
diagnosis, which must pick the same entry.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from postroom.devserver.sink import SinkServer
from postroom.diagnosis.catalogue import CATALOGUE, FALLBACK
from postroom.diagnosis.pasted import diagnose_text
from postroom.diagnosis.testmail import TestEmailResult, send_test_email
from postroom.smtp.errors import Step
from postroom.smtp.settings import ConnectionSettings
from tests.peers.blackhole import black_hole, closed_port
from tests.peers.certs import Certificates
from tests.peers.scripted import DROP, HANG, Raw, ScriptedServer

PASSWORD = "Catalogue-Secret-9"
# A TLS 1.2 record with a fatal handshake_failure alert, which a server sends
# when its TLS setup shares no version or cipher with the client.
HANDSHAKE_FAILURE_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"
AUTH_OFFERED = ["AUTH PLAIN LOGIN", "SIZE 10485760", "8BITMIME"]


@dataclass
class Peers:
    start_scripted: Callable[..., ScriptedServer]
    start_sink: Callable[..., SinkServer]
    certificates: Certificates
    monkeypatch: pytest.MonkeyPatch
    stack: ExitStack


@dataclass
class Target:
    port: int
    security: str = "none"
    host: str = "127.0.0.1"
    settings: dict[str, Any] = field(default_factory=dict)
    recipient: str = "bob@example.com"


Builder = Callable[[Peers], Target]


@dataclass(frozen=True)
class Case:
    name: str
    id: str
    server: Builder
    step: str
    setting: str
    # A phrase of the fix that names what to change.
    fix_names: str
    reply_code: int | None = None
    enhanced: str | None = None
    transient: bool = False
    # How a pasted copy of the reply finds the same entry. "text" needs the
    # text alone, and "step" also the step, for entries that read a reply
    # code differently per step. None marks entries that need facts a pasted
    # reply lacks, such as the announced SIZE, the port or a follow-up check.
    pasted: str | None = "text"


def scripted(
    security: str = "none",
    *,
    login: bool = False,
    settings: dict[str, Any] | None = None,
    recipient: str = "bob@example.com",
    **server: Any,
) -> Builder:
    def build(peers: Peers) -> Target:
        started = peers.start_scripted(**server)
        values = dict(settings or {})
        if login:
            values.update(login="alice@example.com", password=PASSWORD)
        host = "localhost" if security != "none" else "127.0.0.1"
        return Target(started.port, security, host, values, recipient)

    return build


def with_certificate(name: str, security: str = "starttls") -> Builder:
    def build(peers: Peers) -> Target:
        certificate = getattr(peers.certificates, name)
        started = peers.start_scripted(
            tls_context=certificate.server_context(),
            implicit_tls=security == "tls",
        )
        return Target(started.port, security, "localhost")

    return build


def sink(security: str, *, connect_as: str) -> Builder:
    def build(peers: Peers) -> Target:
        started = peers.start_sink(security)
        return Target(started.port, connect_as, "localhost")

    return build


def refused(_peers: Peers) -> Target:
    return Target(closed_port(), "starttls")


def timed_out(peers: Peers) -> Target:
    port = peers.stack.enter_context(black_hole())
    return Target(port, "starttls", settings={"connect_timeout": 0.5})


def timed_out_on_port_25(peers: Peers) -> Target:
    try:
        port = peers.stack.enter_context(black_hole(25))
    except OSError as exc:
        pytest.skip(f"loopback port 25 is taken on this machine ({exc})")
    return Target(port, "none", settings={"connect_timeout": 0.5})


def silent_on_port_465(peers: Peers) -> Target:
    try:
        server = ScriptedServer(port=465, greeting=HANG).start()
    except OSError as exc:
        pytest.skip(f"loopback port 465 is taken on this machine ({exc})")
    peers.stack.callback(server.stop)
    return Target(465, "starttls", "localhost", {"connect_timeout": 0.5})


def name_not_found(peers: Peers) -> Target:
    # Resolving a real or made-up name would ask the machine's resolver, which
    # is another host; the failure the resolver gives is imitated instead.
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    peers.monkeypatch.setattr(socket, "getaddrinfo", fail)
    return Target(587, "starttls", "smtp.example.invalid")


def network_unreachable(peers: Peers) -> Target:
    # No loopback server can produce "network is unreachable"; the connect
    # call fails the way the kernel reports it.
    async def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    loop_class = type(asyncio.new_event_loop())
    peers.monkeypatch.setattr(loop_class, "sock_connect", fail)
    return Target(587, "starttls", "127.0.0.1")


def tls_alert_server(peers: Peers) -> Target:
    started = peers.start_scripted(
        sniff_tls=True,
        tls_context=peers.certificates.localhost.server_context(),
        tls_alert=HANDSHAKE_FAILURE_ALERT,
        greeting=HANG,
    )
    return Target(started.port, "tls", "localhost")


def garbage_on_tls_port(peers: Peers) -> Target:
    # A plain client on an implicit-TLS port: the server's TLS layer gives up
    # on the silent client with an alert record instead of a greeting.
    started = peers.start_scripted(
        sniff_tls=True,
        tls_context=peers.certificates.localhost.server_context(),
        greeting=Raw(b"\x15\x03\x01\x00\x02\x02\x46"),
    )
    return Target(started.port, "starttls", "localhost")


GMAIL_APP_PASSWORD = (
    "534-5.7.9 Application-specific password required. Learn more at\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
    "o13sm2119833lfg.90 - gsmtp"
)
GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. Learn more at\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
    "j88sm1532869qgf.7 - gsmtp"
)
GMAIL_SIGN_IN = (
    "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1>\n"
    "534-5.7.14 Please log in via your web browser and then try again.\n"
    "534 5.7.14  Learn more at https://support.google.com/mail/answer/78754 - gsmtp"
)
GMAIL_DAILY_LIMIT = (
    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
    "550-5.4.5 sending limits go to\n"
    "550 5.4.5  https://support.google.com/a/answer/166852 "
    "d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp"
)
GMAIL_LOGIN_ATTEMPTS = (
    "454-4.7.0 Too many login attempts, please try again later. Learn more at\n"
    "454 4.7.0  https://support.google.com/mail/answer/7126229 "
    "h6-20020a0561220b6600b0049d21a8f4b6sm1103848vkf.11 - gsmtp"
)
M365 = "[BN9PR03CA0123.namprd03.prod.outlook.com]"
MAILGUN_ACTIVATE = (
    "421 Domain sandbox123.mailgun.org is not allowed to send: Please activate "
    "your Mailgun account. Check your inbox or log in to your control panel to "
    "resend the activation email."
)

CASES = [
    # Connection and greeting.
    Case(
        "unresolvable host",
        "dns-not-found",
        name_not_found,
        "connect",
        "host",
        "outbound server (host)",
        transient=True,
    ),
    Case(
        "closed port",
        "connection-refused",
        refused,
        "connect",
        "port",
        "587",
        transient=True,
    ),
    Case(
        "black-holed port",
        "connection-timeout",
        timed_out,
        "connect",
        "port",
        "587",
        transient=True,
    ),
    Case(
        "black-holed port 25",
        "connection-timeout-port-25",
        timed_out_on_port_25,
        "connect",
        "port",
        "Set port to 587",
        transient=True,
    ),
    Case(
        "unreachable network",
        "network-error",
        network_unreachable,
        "connect",
        "host",
        "outbound server (host)",
        transient=True,
    ),
    Case(
        "greeting refusal",
        "greeting-refused",
        scripted(greeting="554 5.7.1 smtp.example.com Access denied"),
        "greeting",
        "provider",
        "allow the public IP address",
        reply_code=554,
        enhanced="5.7.1",
        pasted="step",
    ),
    Case(
        "Spamhaus listing at greeting",
        "ip-blocklisted",
        scripted(
            greeting="554 5.7.1 Service unavailable; Client host [127.0.0.1] "
            "blocked using zen.spamhaus.org; "
            "https://www.spamhaus.org/query/ip/127.0.0.1"
        ),
        "greeting",
        "provider",
        "allow the IP address",
        reply_code=554,
        enhanced="5.7.1",
    ),
    Case(
        "EHLO and HELO rejected",
        "ehlo-rejected",
        scripted(
            replies={
                "EHLO": "554 5.7.1 Client host rejected: Access denied",
                "HELO": "554 5.7.1 Client host rejected: Access denied",
            }
        ),
        "ehlo",
        "ehlo_name",
        "Set ehlo_name",
        reply_code=554,
        enhanced="5.7.1",
        pasted="step",
    ),
    Case(
        "Postfix bare EHLO name",
        "ehlo-name-rejected",
        scripted(
            replies={
                "RCPT": "504 5.5.2 <localhost>: Helo command rejected: need "
                "fully-qualified hostname"
            }
        ),
        "rcpt_to",
        "ehlo_name",
        "Set ehlo_name",
        reply_code=504,
        enhanced="5.5.2",
    ),
    Case(
        "silent greeting",
        "greeting-timeout",
        scripted(greeting=HANG, settings={"connect_timeout": 0.5}),
        "greeting",
        "security",
        "security",
        transient=True,
    ),
    Case(
        "greeting that never ends",
        "greeting-unfinished",
        scripted(
            greeting=Raw(b"220-still greeting\r\n" * 3, then=HANG),
            settings={"connect_timeout": 0.5},
        ),
        "greeting",
        "provider",
        "give the transcript to the provider",
        transient=True,
        pasted=None,
    ),
    Case(
        "greeting with reply code 999",
        "greeting-garbled",
        scripted(greeting="999 weird"),
        "greeting",
        "port",
        "Check the port",
        reply_code=999,
        pasted=None,
    ),
    Case(
        "SSH banner",
        "greeting-garbled",
        scripted(
            greeting=Raw(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", then=HANG),
            settings={"connect_timeout": 0.5},
        ),
        "greeting",
        "port",
        "Check the port",
    ),
    # TLS and certificates.
    Case(
        "implicit TLS on a STARTTLS port",
        "tls-on-plain-port",
        sink("starttls", connect_as="tls"),
        "connect",
        "security",
        "Set security to STARTTLS",
    ),
    Case(
        "STARTTLS on an implicit-TLS port (silence)",
        "plain-on-tls-port",
        sink("tls", connect_as="starttls"),
        "greeting",
        "security",
        "Set security to TLS",
        pasted=None,
    ),
    Case(
        "STARTTLS on an implicit-TLS port (garbage)",
        "plain-on-tls-port",
        garbage_on_tls_port,
        "greeting",
        "security",
        "Set security to TLS",
        pasted=None,
    ),
    Case(
        "silent port 465",
        "plain-on-port-465",
        silent_on_port_465,
        "greeting",
        "security",
        "Set security to TLS for port 465",
        pasted=None,
    ),
    Case(
        "TLS handshake alert",
        "tls-handshake-failed",
        tls_alert_server,
        "connect",
        "security",
        "security matches the port",
    ),
    Case(
        "expired certificate",
        "certificate-expired",
        with_certificate("expired"),
        "starttls",
        "provider",
        "renew the certificate",
    ),
    Case(
        "certificate for another name",
        "certificate-hostname-mismatch",
        with_certificate("other_name"),
        "starttls",
        "host",
        "Set the outbound server (host)",
    ),
    Case(
        "self-signed certificate",
        "certificate-self-signed",
        with_certificate("self_signed"),
        "starttls",
        "ca_bundle",
        "set ca_bundle",
    ),
    Case(
        "certificate from an unknown CA",
        "certificate-untrusted",
        with_certificate("untrusted", security="tls"),
        "connect",
        "ca_bundle",
        "Set ca_bundle",
    ),
    Case(
        "certificate not yet valid",
        "certificate-invalid",
        with_certificate("not_yet_valid"),
        "starttls",
        "ca_bundle",
        "ca_bundle",
    ),
    Case(
        "no STARTTLS in EHLO",
        "starttls-not-offered",
        scripted("starttls", extensions=["SIZE 10485760", "8BITMIME"]),
        "starttls",
        "security",
        "Set security to TLS",
    ),
    Case(
        "Postfix without its TLS key",
        "starttls-unavailable",
        scripted(
            "starttls",
            replies={"STARTTLS": "454 4.7.0 TLS not available due to local problem"},
        ),
        "starttls",
        "provider",
        "fix TLS on the server",
        reply_code=454,
        enhanced="4.7.0",
        transient=True,
        pasted="step",
    ),
    Case(
        "530 before STARTTLS",
        "starttls-required",
        scripted(replies={"MAIL": "530 5.7.0 Must issue a STARTTLS command first"}),
        "mail_from",
        "security",
        "Set security to STARTTLS",
        reply_code=530,
        enhanced="5.7.0",
    ),
    Case(
        "Microsoft 365 451 STARTTLS required",
        "starttls-required",
        scripted(
            replies={
                "MAIL": "451 5.7.3 STARTTLS is required to send mail "
                "[SG2PR02CA0073.apcprd02.prod.outlook.com 2024-07-24T03:43:18.298Z "
                "08DCAB6EB788477A]"
            }
        ),
        "mail_from",
        "security",
        "Set security to STARTTLS",
        reply_code=451,
        enhanced="5.7.3",
    ),
    # Authentication.
    Case(
        "no AUTH before STARTTLS",
        "auth-not-offered-before-tls",
        scripted(login=True, extensions=["SIZE 10485760", "STARTTLS"]),
        "auth",
        "security",
        "Set security to STARTTLS",
        pasted=None,
    ),
    Case(
        "mechanism not offered",
        "auth-not-offered",
        scripted(
            login=True,
            extensions=["AUTH LOGIN PLAIN"],
            settings={"mechanism": "CRAM-MD5"},
        ),
        "auth",
        "mechanism",
        "Set the auth mechanism to one the server offers (LOGIN, PLAIN)",
        pasted=None,
    ),
    Case(
        "504 unrecognized mechanism",
        "auth-mechanism-rejected",
        scripted(
            login=True,
            extensions=["AUTH LOGIN CRAM-MD5"],
            replies={"AUTH": "504 5.7.4 Unrecognized authentication type"},
        ),
        "auth",
        "mechanism",
        "Set the auth mechanism to one the server offers (LOGIN, CRAM-MD5)",
        reply_code=504,
        enhanced="5.7.4",
    ),
    Case(
        "mechanism this client does not know",
        "auth-unsupported",
        scripted(login=True, extensions=AUTH_OFFERED, settings={"mechanism": "Bogus"}),
        "auth",
        "mechanism",
        "Choose another auth mechanism",
        pasted=None,
    ),
    Case(
        "Amazon SES wrong SMTP credentials",
        "auth-credentials-rejected",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            replies={"AUTH": "535 Authentication Credentials Invalid"},
        ),
        "auth",
        "password",
        "Check the login and password",
        reply_code=535,
    ),
    Case(
        "Postfix AUTH not enabled",
        "auth-failed",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            replies={"AUTH": "503 5.5.1 Error: authentication not enabled"},
        ),
        "auth",
        "password",
        "Check the login, password",
        reply_code=503,
        enhanced="5.5.1",
        pasted="step",
    ),
    Case(
        "530 authentication required",
        "auth-required",
        scripted(replies={"MAIL": "530 5.7.0 Authentication required"}),
        "mail_from",
        "login",
        "Set login and password",
        reply_code=530,
        enhanced="5.7.0",
    ),
    Case(
        "Gmail app password required",
        "gmail-app-password-required",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN PLAIN XOAUTH2", "SIZE 35882577"],
            replies={"AUTH": GMAIL_APP_PASSWORD},
            tls=True,
        ),
        "auth",
        "password",
        "Create an app password",
        reply_code=534,
        enhanced="5.7.9",
    ),
    Case(
        "Mechanism too weak: app password",
        "auth-mechanism-too-weak",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN PLAIN", "SIZE 52428800"],
            replies={
                "AUTH": "534 5.7.9 Please use an application password for this account"
            },
            tls=True,
        ),
        "auth",
        "password",
        "create an app password",
        reply_code=534,
        enhanced="5.7.9",
    ),
    Case(
        "Gmail sign-in blocked",
        "gmail-sign-in-blocked",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN PLAIN XOAUTH2"],
            replies={"AUTH": GMAIL_SIGN_IN},
            tls=True,
        ),
        "auth",
        "password",
        "set an app password",
        reply_code=534,
        enhanced="5.7.14",
    ),
    Case(
        "Gmail account password refused",
        "gmail-bad-credentials",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN PLAIN XOAUTH2"],
            replies={"AUTH": GMAIL_BAD_CREDENTIALS},
            tls=True,
        ),
        "auth",
        "password",
        "Set password to an app password",
        reply_code=535,
        enhanced="5.7.8",
    ),
    Case(
        "Microsoft 365 SMTP AUTH off for the tenant",
        "m365-smtp-auth-disabled-tenant",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            replies={
                "AUTH": "535 5.7.139 Authentication unsuccessful, "
                "SmtpClientAuthentication is disabled for the Tenant. Visit "
                f"https://aka.ms/smtp_auth_disabled for more information. {M365}"
            },
            tls=True,
        ),
        "auth",
        "provider",
        "turn SMTP AUTH on for the organization",
        reply_code=535,
        enhanced="5.7.139",
    ),
    Case(
        "Microsoft 365 security defaults",
        "m365-security-defaults",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            replies={
                "AUTH": "535 5.7.139 Authentication unsuccessful, user is locked by "
                f"your organization's security defaults policy. Contact your "
                f"administrator. {M365}"
            },
            tls=True,
        ),
        "auth",
        "mechanism",
        "Set the auth mechanism to XOAUTH2",
        reply_code=535,
        enhanced="5.7.139",
    ),
    Case(
        "Microsoft 365 basic authentication off",
        "m365-basic-auth-disabled",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            replies={
                "AUTH": "535 5.7.139 Authentication unsuccessful, basic "
                f"authentication is disabled. {M365}"
            },
            tls=True,
        ),
        "auth",
        "mechanism",
        "Set the auth mechanism to XOAUTH2",
        reply_code=535,
        enhanced="5.7.139",
    ),
    Case(
        "Microsoft 365 mailbox SMTP AUTH off",
        "m365-smtp-auth-blocked",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            replies={
                "AUTH": "535 5.7.139 Authentication unsuccessful, the request did "
                "not meet the criteria to be authenticated successfully. Contact "
                f"your administrator. {M365}"
            },
            tls=True,
        ),
        "auth",
        "provider",
        "enable Authenticated SMTP for this mailbox",
        reply_code=535,
        enhanced="5.7.139",
    ),
    Case(
        "Exchange 535 5.7.3",
        "m365-authentication-unsuccessful",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            replies={"AUTH": f"535 5.7.3 Authentication unsuccessful {M365}"},
            tls=True,
        ),
        "auth",
        "password",
        "Check the login (the full mailbox address) and password",
        reply_code=535,
        enhanced="5.7.3",
    ),
    Case(
        "Microsoft 365 anonymous MAIL FROM",
        "m365-client-not-authenticated",
        scripted(
            "starttls",
            replies={
                "MAIL": "530 5.7.57 Client not authenticated to send mail. "
                "[MW4PR03CA0012.namprd03.prod.outlook.com]"
            },
            tls=True,
        ),
        "mail_from",
        "login",
        "Set login to the mailbox address",
        reply_code=530,
        enhanced="5.7.57",
    ),
    # Sender and relay permissions.
    Case(
        "Microsoft 365 Send As (5.7.60)",
        "m365-send-as-denied",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            users={"alice@example.com": PASSWORD},
            replies={
                "DATA": "550 5.7.60 SMTP; Client does not have permissions to send "
                "as this sender [MW2PR1901MB2155.namprd19.prod.outlook.com]"
            },
            tls=True,
        ),
        "data",
        "from_address",
        "Send As permission",
        reply_code=550,
        enhanced="5.7.60",
    ),
    Case(
        "Microsoft 365 SendAsDenied (5.2.252)",
        "m365-send-as-denied-store",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            users={"alice@example.com": PASSWORD},
            replies={
                "DATA": "554 5.2.252 SendAsDenied; alice@example.com not allowed to "
                "send as orders@example.com; STOREDRV.Submission.Exception:"
                "SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process "
                "message due to a permanent exception with message "
                "[BeginDiagnosticData]Cannot submit message."
            },
            tls=True,
        ),
        "data",
        "from_address",
        "add the From address as an alias",
        reply_code=554,
        enhanced="5.2.252",
    ),
    Case(
        "Microsoft 365 full sending mailbox",
        "m365-sender-mailbox-full",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN XOAUTH2"],
            users={"alice@example.com": PASSWORD},
            replies={
                "DATA": "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:"
                "QuotaExceededException.MapiExceptionShutoffQuotaExceeded"
            },
            tls=True,
        ),
        "data",
        "provider",
        "Empty the login mailbox's Sent Items",
        reply_code=554,
        enhanced="5.2.2",
    ),
    Case(
        "Postfix sender not owned",
        "sender-not-owned",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            users={"alice@example.com": PASSWORD},
            replies={
                "RCPT": "553 5.7.1 <orders@example.com>: Sender address rejected: "
                "not owned by user alice@example.com"
            },
        ),
        "rcpt_to",
        "from_address",
        "Set from_address to an address the login owns",
        reply_code=553,
        enhanced="5.7.1",
    ),
    Case(
        "Postfix sender needs login",
        "sender-not-logged-in",
        scripted(
            replies={
                "RCPT": "553 5.7.1 <orders@example.com>: Sender address rejected: "
                "not logged in"
            }
        ),
        "rcpt_to",
        "login",
        "Set login and password",
        reply_code=553,
        enhanced="5.7.1",
    ),
    Case(
        "Zoho From address not the account's",
        "zoho-relaying-disallowed",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            users={"alice@example.com": PASSWORD},
            replies={"DATA": "553 5.7.1 Relaying disallowed as orders@example.com"},
        ),
        "data",
        "from_address",
        "Set from_address to the Zoho account's address",
        reply_code=553,
        enhanced="5.7.1",
    ),
    Case(
        "SendGrid unverified sender",
        "sendgrid-sender-identity",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            users={"alice@example.com": PASSWORD},
            replies={
                "DATA": "550 The from address does not match a verified Sender "
                "Identity. Mail cannot be sent until this error is resolved. Visit "
                "https://sendgrid.com/docs/for-developers/sending-email/"
                "sender-identity/ to see the Sender Identity requirements"
            },
        ),
        "data",
        "from_address",
        "Verify the From address",
        reply_code=550,
    ),
    Case(
        "Amazon SES unverified identity",
        "ses-identity-not-verified",
        scripted(
            login=True,
            extensions=AUTH_OFFERED,
            users={"alice@example.com": PASSWORD},
            replies={
                "DATA": "554 Message rejected: Email address is not verified. The "
                "following identities failed the check in region US-EAST-1: "
                "orders@example.com"
            },
        ),
        "data",
        "from_address",
        "Verify the From address or its domain in the SES console",
        reply_code=554,
    ),
    Case(
        "Mailgun sandbox recipient",
        "mailgun-sandbox-recipient",
        scripted(
            replies={
                "DATA": "554 Sandbox subdomains are for test purposes only. Please "
                "add your own domain or add the address to authorized recipients "
                "in Account Settings."
            }
        ),
        "data",
        "provider",
        "authorized recipients",
        reply_code=554,
    ),
    Case(
        "Mailgun account not activated (421)",
        "mailgun-domain-not-allowed",
        scripted(replies={"MAIL": MAILGUN_ACTIVATE}),
        "mail_from",
        "provider",
        "Activate the Mailgun account",
        reply_code=421,
    ),
    Case(
        "Postfix relay access denied",
        "relay-access-denied",
        scripted(replies={"RCPT": "554 5.7.1 <bob@example.com>: Relay access denied"}),
        "rcpt_to",
        "login",
        "Set login and password",
        reply_code=554,
        enhanced="5.7.1",
    ),
    Case(
        "Postfix relay access denied (454)",
        "relay-access-denied",
        scripted(replies={"RCPT": "454 4.7.1 <bob@example.com>: Relay access denied"}),
        "rcpt_to",
        "login",
        "Set login and password",
        reply_code=454,
        enhanced="4.7.1",
    ),
    Case(
        "Exchange unable to relay",
        "exchange-unable-to-relay",
        scripted(
            replies={
                "RCPT": "550 5.7.54 SMTP; Unable to relay recipient in non-accepted "
                "domain"
            }
        ),
        "rcpt_to",
        "login",
        "Set login and password of a mailbox",
        reply_code=550,
        enhanced="5.7.54",
    ),
    Case(
        "sender domain unknown",
        "sender-rejected",
        scripted(
            replies={
                "MAIL": "553 5.1.8 <orders@example.com>: Sender address rejected: "
                "Domain not found"
            }
        ),
        "mail_from",
        "from_address",
        "Set from_address",
        reply_code=553,
        enhanced="5.1.8",
        pasted="step",
    ),
    # Recipients and message size.
    Case(
        "Exchange recipient not found",
        "recipient-unknown",
        scripted(
            replies={
                "RCPT": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient "
                "bob@example.com not found by SMTP address lookup"
            }
        ),
        "rcpt_to",
        "recipient",
        "Check the recipient address",
        reply_code=550,
        enhanced="5.1.10",
    ),
    Case(
        "Postfix user unknown",
        "recipient-unknown-text",
        scripted(
            replies={
                "RCPT": "550 5.1.1 <bob@example.com>: Recipient address rejected: "
                "User unknown in virtual mailbox table"
            }
        ),
        "rcpt_to",
        "recipient",
        "Check the recipient address",
        reply_code=550,
        enhanced="5.1.1",
    ),
    Case(
        "Postfix too many recipients",
        "too-many-recipients",
        scripted(replies={"RCPT": "452 4.5.3 Error: too many recipients"}),
        "rcpt_to",
        "message",
        "split long recipient lists",
        reply_code=452,
        enhanced="4.5.3",
        transient=True,
    ),
    Case(
        "recipient limit reached",
        "too-many-recipients-status",
        scripted(replies={"RCPT": "452 4.5.3 Recipient limit reached"}),
        "rcpt_to",
        "message",
        "split long recipient lists",
        reply_code=452,
        enhanced="4.5.3",
        transient=True,
    ),
    Case(
        "too large, no SIZE announced",
        "message-too-large",
        scripted(
            extensions=["8BITMIME"],
            replies={"DATA": "552 5.3.4 Message size exceeds fixed limit"},
        ),
        "data",
        "message",
        "Make the message smaller",
        reply_code=552,
        enhanced="5.3.4",
    ),
    Case(
        "too large within the announced SIZE",
        "message-too-large-within-size",
        scripted(
            extensions=["SIZE 10240000", "8BITMIME"],
            replies={"DATA": "552 5.3.4 Message size exceeds fixed limit"},
        ),
        "data",
        "message",
        "well below 10240000 bytes",
        reply_code=552,
        enhanced="5.3.4",
        pasted=None,
    ),
    Case(
        "storage allocation exceeded",
        "message-too-large-status",
        scripted(
            replies={
                "DATA": "552 5.3.4 Requested mail action aborted: exceeded storage "
                "allocation"
            }
        ),
        "data",
        "message",
        "Make the message smaller",
        reply_code=552,
        enhanced="5.3.4",
    ),
    Case(
        "larger than the announced SIZE",
        "message-too-large-for-size",
        scripted(extensions=["SIZE 100", "8BITMIME"]),
        "mail_from",
        "message",
        "Make the message smaller",
        pasted=None,
    ),
    # Quotas and rates.
    Case(
        "Gmail daily limit (550)",
        "quota-exceeded",
        scripted(replies={"DATA": GMAIL_DAILY_LIMIT}),
        "data",
        "provider",
        "higher quota",
        reply_code=550,
        enhanced="5.4.5",
        transient=True,
    ),
    Case(
        "Amazon SES daily quota (454)",
        "quota-exceeded",
        scripted(
            replies={"DATA": "454 Throttling failure: Daily message quota exceeded."}
        ),
        "data",
        "provider",
        "higher quota",
        reply_code=454,
        transient=True,
    ),
    Case(
        "Gmail 421 at EHLO",
        "rate-limited",
        scripted(
            replies={
                "EHLO": "421 4.7.0 Try again later, closing connection. (EHLO) "
                "v6-20020a50c406000000b00461d375b0a5sm78344edf.43 - gsmtp"
            }
        ),
        "ehlo",
        "provider",
        "ask the provider to raise the limit",
        reply_code=421,
        enhanced="4.7.0",
        transient=True,
    ),
    Case(
        "Exchange Online server busy",
        "rate-limited",
        scripted(
            replies={
                "RCPT": "451 4.7.500 Server busy. Please try again later from "
                "[127.0.0.1]. (S77714) [BN8NAM12FT034.eop-nam12.prod.protection."
                "outlook.com]"
            }
        ),
        "rcpt_to",
        "provider",
        "ask the provider to raise the limit",
        reply_code=451,
        enhanced="4.7.500",
        transient=True,
    ),
    Case(
        "Gmail too many logins",
        "rate-limited",
        scripted(
            "starttls",
            login=True,
            extensions_after_tls=["AUTH LOGIN PLAIN XOAUTH2"],
            replies={"AUTH": GMAIL_LOGIN_ATTEMPTS},
            tls=True,
        ),
        "auth",
        "provider",
        "ask the provider to raise the limit",
        reply_code=454,
        enhanced="4.7.0",
        transient=True,
    ),
    Case(
        "Amazon SES sending rate",
        "rate-limited",
        scripted(
            replies={"DATA": "454 Throttling failure: Maximum sending rate exceeded."}
        ),
        "data",
        "provider",
        "ask the provider to raise the limit",
        reply_code=454,
        transient=True,
    ),
    Case(
        "service not available",
        "rate-limited-status",
        scripted(
            replies={
                "MAIL": "421 4.3.2 Service not available, closing transmission channel"
            }
        ),
        "mail_from",
        "provider",
        "ask the provider to raise the limit",
        reply_code=421,
        enhanced="4.3.2",
        transient=True,
    ),
    # Generic fallbacks.
    Case(
        "dropped after DATA",
        "disconnected",
        scripted(replies={"DATA": DROP}),
        "data",
        "provider",
        "Retry later",
        transient=True,
        pasted=None,
    ),
    Case(
        "no reply to MAIL FROM",
        "timeout",
        scripted(replies={"MAIL": HANG}, settings={"command_timeout": 0.5}),
        "mail_from",
        "command_timeout",
        "raise the command timeout",
        transient=True,
        pasted=None,
    ),
    Case(
        "internationalized address without SMTPUTF8",
        "smtputf8-not-offered",
        scripted(
            extensions=["SIZE 10485760", "8BITMIME"], recipient="jürgen@example.com"
        ),
        "mail_from",
        "provider",
        "Use an ASCII address",
        pasted=None,
    ),
    Case(
        "Postfix queue file error",
        "transient-reply",
        scripted(replies={"DATA": "451 4.3.0 Error: queue file write error"}),
        "data",
        "provider",
        "Postroom retries later",
        reply_code=451,
        enhanced="4.3.0",
        transient=True,
    ),
    Case(
        "content filter rejection",
        "permanent-reply",
        scripted(replies={"DATA": "550 5.7.1 Message rejected by content filter"}),
        "data",
        "provider",
        "give it to the provider",
        reply_code=550,
        enhanced="5.7.1",
    ),
    Case(
        "reply code 999 to MAIL FROM",
        "protocol-error",
        scripted(replies={"MAIL": "999 weird"}),
        "mail_from",
        "provider",
        "give the transcript to the provider",
        reply_code=999,
        pasted=None,
    ),
    Case(
        "250 instead of 354",
        "unknown",
        scripted(replies={"DATA_START": "250 2.0.0 OK"}),
        "data",
        "provider",
        "give the transcript to the provider",
        reply_code=250,
        enhanced="2.0.0",
        transient=True,
    ),
]


@pytest.fixture
def peers(
    start_scripted: Callable[..., ScriptedServer],
    start_sink: Callable[..., SinkServer],
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Peers]:
    with ExitStack() as stack:
        yield Peers(start_scripted, start_sink, certificates, monkeypatch, stack)


def run_case(case: Case, peers: Peers) -> TestEmailResult:
    target = case.server(peers)
    values: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "security": target.security,
        "ca_bundle": str(peers.certificates.ca_file),
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
    }
    values.update(target.settings)
    settings = ConnectionSettings(**values)
    return asyncio.run(
        send_test_email("Catalogue", settings, "orders@example.com", target.recipient)
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_catalogue_entry(case: Case, peers: Peers) -> None:
    result = run_case(case, peers)

    assert not result.ok
    assert result.diagnosis == case.id, result.cause
    assert result.step == case.step
    assert result.reply_code == case.reply_code
    assert result.enhanced_status == case.enhanced
    assert result.transient is case.transient
    assert result.setting == case.setting
    assert case.fix_names in (result.fix or "")
    assert "{" not in (result.cause or "") + (result.fix or "")
    assert PASSWORD not in repr(result.as_dict())


PASTED = [case for case in CASES if case.pasted and case.reply_code is not None]


@pytest.mark.parametrize("case", PASTED, ids=[case.name for case in PASTED])
def test_pasted_reply_finds_same_entry(case: Case, peers: Peers) -> None:
    result = run_case(case, peers)
    assert result.reply_code is not None
    step = Step(case.step) if case.pasted == "step" else None

    pasted = diagnose_text(f"{result.reply_code} {result.reply_text}", step=step)

    assert pasted.id == case.id
    assert pasted.setting == case.setting
    assert pasted.reply_code == case.reply_code


def test_cdo_error_names_credentials(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    # The server reply that CDO's 0x80040217 hides: a rejected login.
    server = start_scripted(extensions=AUTH_OFFERED, users={"alice": "right"})
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        login="alice",
        password="wrong",
        connect_timeout=2.0,
        command_timeout=2.0,
    )
    behind = asyncio.run(
        send_test_email("Catalogue", settings, "orders@example.com", "bob@example.com")
    )

    pasted = diagnose_text(
        "The message could not be sent to the SMTP server. The transport error "
        "code was 0x80040217. The server response was not available"
    )

    assert behind.diagnosis == "auth-credentials-rejected"
    assert pasted.id == "windows-cdo-logon-failure"
    assert pasted.matched is True
    assert pasted.step is None
    assert pasted.transient is False
    assert pasted.setting == behind.setting == "password"
    assert "Check the login and password" in pasted.fix


def test_every_entry_has_a_scenario() -> None:
    covered = {case.id for case in CASES} | {"windows-cdo-logon-failure"}
    # Entries added in other modules carry their own real-server tests; their
    # ids must at least appear in some test file.
    tests_text = "\n".join(
        path.read_text() for path in Path(__file__).parents[1].rglob("test_*.py")
    )
    ids = [entry.id for entry in CATALOGUE] + [FALLBACK.id]

    missing = [
        entry_id
        for entry_id in ids
        if entry_id not in covered and f'"{entry_id}"' not in tests_text
    ]

    assert missing == []
    assert len(ids) == len(set(ids))


def test_entries_name_setting_in_sentences() -> None:
    for entry in (*CATALOGUE, FALLBACK):
        assert entry.setting, entry.id
        assert entry.fix.strip().endswith("."), entry.id
        assert entry.cause.strip().endswith("."), entry.id


def test_unrecognized_text_is_unknown() -> None:
    pasted = diagnose_text("the printer says: error 42")

    assert pasted.id == "unknown"
    assert pasted.matched is False


def test_pasted_text_must_not_be_empty() -> None:
    from postroom.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as raised:
        diagnose_text("   ")

    assert raised.value.field == "text"
