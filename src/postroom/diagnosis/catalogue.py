"""The diagnosis catalogue: known SMTP failures, what they mean, what to change.

Each entry is data. To add a case, add an Entry with a new stable ``id``
(never reuse or rename one: stored diagnoses and scripts refer to them) and a
test that reproduces it against a scripted server. Entries match on the step,
the client-side error kind, the reply code, the enhanced status code
(RFC 3463) and patterns of the server's text; the most specific match wins.

Entries are grouped by theme: connection and greeting, TLS and certificates,
authentication, sender and relay permissions, recipients and message size,
quotas and rates, pasted client errors, and generic fallbacks. Provider
entries match the provider's own reply wording, which wins over an enhanced
status code, which wins over a reply code or class.

Placeholders in ``cause`` and ``fix``: {host} {port} {security} {mechanism}
{login} {reply} {error} {offered} {names} {expires} {size} {size_limit}
{step}.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.diagnosis.entry import (
    Context,
    Entry,
    codes,
    enhanced,
    kinds,
    pattern,
    steps,
)
from postroom.smtp.errors import ErrorKind, Step

# OpenSSL's words when the client speaks TLS and the server answers in plain
# text (an SMTP greeting), as OpenSSL 1.1 and 3.x put them.
_PLAIN_TEXT_PEER = pattern(
    r"wrong.version.number|unknown.protocol|packet.length.too.long|"
    r"record.layer.failure|http.request"
)


def _not_tls_security(context: Context) -> bool:
    return context.security != "tls"


def _implicit_tls_answers(context: Context) -> bool:
    return bool(context.fact("implicit_tls_works"))


def _no_auth_before_tls(context: Context) -> bool:
    return context.security == "none" and not context.fact("offered")


def _size_announced(context: Context) -> bool:
    return context.fact("size_limit") is not None


def _size_not_announced(context: Context) -> bool:
    return context.fact("size_limit") is None


_CONNECTION = (
    Entry(
        id="dns-not-found",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.DNS),
        cause="The server name {host} cannot be resolved: DNS has no address for it "
        "({error}).",
        fix="Check the outbound server (host) for typing errors; use the exact name "
        "your provider documents, for example smtp.office365.com.",
        # Transient because a resolver outage looks the same as a typing
        # error; retries stop at the attempt and age limits.
        transient=True,
        setting="host",
    ),
    Entry(
        id="connection-refused",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.REFUSED),
        cause="{host} refused the connection on port {port}: nothing listens there "
        "(the server is down or restarting, or the port is wrong), or a firewall "
        "rejects it.",
        fix="Check that the server is running and the outbound port is right: 587 is "
        "the usual submission port with STARTTLS, 465 is for implicit TLS, 25 is for "
        "server-to-server relay. Postroom retries queued messages meanwhile.",
        # A relay that restarts refuses connections for a moment; messages
        # queued then must be retried, not failed.
        transient=True,
        setting="port",
    ),
    Entry(
        id="connection-timeout",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.TIMEOUT),
        cause="No answer from {host} on port {port} within the connect timeout: the "
        "port is blocked by a firewall or the server does not listen on it.",
        fix="Check the outbound port (587 is the usual submission port, 465 for "
        "implicit TLS) and that the firewall allows outgoing connections to it.",
        transient=True,
        setting="port",
    ),
    Entry(
        id="connection-timeout-port-25",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.TIMEOUT),
        when=lambda context: context.port == 25,
        cause="No answer from {host} on port 25 within the connect timeout. Many "
        "hosting and cloud providers block outgoing connections to port 25.",
        fix="Set port to 587 with security STARTTLS (or 465 with TLS), which "
        "providers keep open for submission.",
        transient=True,
        setting="port",
    ),
    Entry(
        id="network-error",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.NETWORK),
        cause="The connection to {host} port {port} failed: {error}.",
        fix="Check the outbound server (host) and port, and that this machine can "
        "reach it.",
        transient=True,
        setting="host",
    ),
    Entry(
        id="greeting-refused",
        steps=steps(Step.GREETING),
        reply_class=5,
        cause="{host} answered the connection with a refusal instead of a greeting: "
        '"{reply}". It does not accept SMTP sessions from this machine\'s IP '
        "address.",
        fix="Ask the provider to allow the public IP address this server sends from, "
        "and check that host is the provider's submission server, not a server "
        "that only receives mail for its own domains.",
        transient=False,
        setting="provider",
    ),
    Entry(
        id="ip-blocklisted",
        text=pattern(
            r"block ?list|black ?list|blocked using|listed (at|in|on|by)|"
            r"spamhaus|barracuda|\bRBL\b|\bDNSBL\b|banned|poor reputation"
        ),
        cause="The server refused this machine's IP address because it is on a "
        'block list or has a poor reputation: "{reply}".',
        fix="Ask the provider to allow the IP address this server sends from, or "
        "have it removed from the block list the reply names; submitting on the "
        "provider's authenticated port (587 with a login) avoids most IP block "
        "lists.",
        transient=False,
        setting="provider",
    ),
    Entry(
        id="ehlo-rejected",
        steps=steps(Step.EHLO),
        reply_class=5,
        cause="The server rejected the EHLO and HELO greeting of this client: "
        '"{reply}".',
        fix="Set ehlo_name to this server's fully qualified domain name, one "
        "that resolves in DNS (for example app1.example.com); some servers refuse "
        "a bare host name or an address literal.",
        transient=False,
        setting="ehlo_name",
    ),
    Entry(
        id="ehlo-name-rejected",
        text=pattern(
            r"Helo command rejected|invalid (EHLO|HELO)|(EHLO|HELO)[^.]*"
            r"(fully.qualified|hostname|domain)"
        ),
        cause='The server rejected the name this client sent in EHLO: "{reply}".',
        fix="Set ehlo_name to this server's fully qualified domain name, one "
        "that resolves in DNS (for example app1.example.com).",
        transient=False,
        setting="ehlo_name",
    ),
)

_TLS = (
    Entry(
        id="ca-bundle-unusable",
        kinds=kinds(ErrorKind.CONFIGURATION),
        when=lambda context: bool(context.fact("ca_bundle")),
        cause="The profile's CA bundle cannot be used, so no TLS connection was "
        "attempted: {error}.",
        fix="Set ca_bundle to a readable PEM file that contains the CA certificate "
        "(-----BEGIN CERTIFICATE-----), or clear it to trust the system's CAs.",
        transient=False,
        setting="ca_bundle",
    ),
    Entry(
        id="tls-on-plain-port",
        kinds=kinds(ErrorKind.TLS),
        text=_PLAIN_TEXT_PEER,
        # None: a pasted error, where the profile's security is not known.
        when=lambda context: context.security in ("tls", None),
        cause="Postroom started TLS at once (implicit TLS), but the server on port "
        "{port} answered in plain text: this port expects STARTTLS or no TLS "
        "({error}).",
        fix="Set security to STARTTLS (port 587 is the usual one), or set port to "
        "465 if the provider offers implicit TLS there.",
        transient=False,
        setting="security",
    ),
    Entry(
        # Listed before the two entries below, which match the same step and
        # errors with an equal score: lines of a greeting did arrive, so the
        # port does not wait for a TLS handshake.
        id="greeting-unfinished",
        steps=steps(Step.GREETING),
        kinds=kinds(ErrorKind.TIMEOUT),
        when=lambda context: bool(context.fact("unfinished_greeting_lines")),
        cause="{host} began its SMTP greeting on port {port} but never ended it: "
        "{error}.",
        fix="Check that host and port point at the provider's SMTP server; if they "
        "do, the server or a device in front of it misbehaves: give the transcript "
        "to the provider.",
        transient=True,
        setting="provider",
    ),
    Entry(
        id="plain-on-tls-port",
        steps=steps(Step.GREETING),
        kinds=kinds(ErrorKind.TIMEOUT, ErrorKind.DISCONNECTED, ErrorKind.PROTOCOL),
        when=lambda context: (
            _not_tls_security(context) and _implicit_tls_answers(context)
        ),
        cause="The server on port {port} sent no SMTP greeting because it expects a "
        "TLS handshake first (implicit TLS), and a TLS handshake on that port "
        "succeeded.",
        fix="Set security to TLS (implicit TLS) for port {port}, or keep STARTTLS and "
        "set port to 587.",
        transient=False,
        setting="security",
    ),
    Entry(
        id="plain-on-port-465",
        steps=steps(Step.GREETING),
        kinds=kinds(ErrorKind.TIMEOUT, ErrorKind.DISCONNECTED, ErrorKind.PROTOCOL),
        when=lambda context: _not_tls_security(context) and context.port == 465,
        cause="The server on port 465 sent no SMTP greeting: port 465 normally "
        "expects a TLS handshake first (implicit TLS).",
        fix="Set security to TLS for port 465, or keep STARTTLS and set port to 587.",
        transient=False,
        setting="security",
    ),
    Entry(
        id="tls-handshake-failed",
        kinds=kinds(ErrorKind.TLS),
        cause="The TLS handshake with {host} failed: {error}.",
        fix="Check that security matches the port (STARTTLS on 587, TLS on 465). If "
        "it does, the server may only offer old TLS versions, which the provider "
        "must update, or the relay may require a TLS client certificate: ask its "
        "administrator.",
        transient=False,
        setting="security",
    ),
    Entry(
        id="certificate-expired",
        kinds=kinds(ErrorKind.CERTIFICATE),
        text=pattern(r"expired"),
        cause="The server's TLS certificate has expired ({expires}).",
        fix="Ask the provider or the relay's administrator to renew the certificate; "
        "do not turn verification off.",
        transient=False,
        setting="provider",
    ),
    Entry(
        id="certificate-hostname-mismatch",
        kinds=kinds(ErrorKind.CERTIFICATE),
        text=pattern(r"hostname mismatch|doesn't match|IP address mismatch"),
        cause="The server's certificate was issued for {names}, not for {host}.",
        fix="Set the outbound server (host) to a name the certificate covers ({names}).",
        transient=False,
        setting="host",
    ),
    Entry(
        id="certificate-self-signed",
        kinds=kinds(ErrorKind.CERTIFICATE),
        text=pattern(r"self.signed certificate(?! in certificate chain)"),
        cause="The server's certificate is self-signed: it vouches for itself, so "
        "no trusted authority confirms that the server is {host} ({error}).",
        fix="Ask the relay's administrator for a certificate from a public or "
        "company CA, or, if you trust this server, set ca_bundle to a PEM file "
        "with the server's own certificate.",
        transient=False,
        setting="ca_bundle",
    ),
    Entry(
        id="certificate-untrusted",
        kinds=kinds(ErrorKind.CERTIFICATE),
        text=pattern(
            r"self.signed|unable to get (local )?issuer|unknown ca|"
            r"certificate chain"
        ),
        cause="The server's certificate is not signed by a trusted authority "
        "(self-signed or issued by a company's own CA): {error}.",
        fix="Set ca_bundle to a PEM file with the CA certificate that issued the "
        "server's certificate; ask the relay's administrator for it.",
        transient=False,
        setting="ca_bundle",
    ),
    Entry(
        id="certificate-invalid",
        kinds=kinds(ErrorKind.CERTIFICATE),
        cause="The server's TLS certificate could not be verified: {error}.",
        fix="Ask the relay's administrator to fix the certificate, or set ca_bundle "
        "to the CA that issued it.",
        transient=False,
        setting="ca_bundle",
    ),
    Entry(
        id="starttls-not-offered",
        steps=steps(Step.STARTTLS),
        kinds=kinds(ErrorKind.NOT_OFFERED),
        cause="The server on port {port} does not offer STARTTLS.",
        fix="Set security to TLS if the port is 465, or ask the provider which port "
        "offers encryption; use security none only on a trusted internal network.",
        transient=False,
        setting="security",
    ),
    Entry(
        id="starttls-unavailable",
        steps=steps(Step.STARTTLS),
        reply_class=4,
        cause='The server offers STARTTLS but could not start TLS: "{reply}". This '
        "is a fault at the server, usually a missing or unreadable certificate "
        "or key.",
        fix="Ask the provider or the relay's administrator to fix TLS on the "
        "server; Postroom retries meanwhile. Setting security to none would "
        "send the password and messages unencrypted.",
        transient=True,
        setting="provider",
    ),
    # Microsoft 365 replies "451 5.7.3 STARTTLS is required to send mail",
    # a 4xx that no retry can fix, so the reply code alone would mislead.
    Entry(
        id="starttls-required",
        steps=steps(Step.EHLO, Step.AUTH, Step.MAIL_FROM, Step.RCPT_TO, Step.DATA),
        kinds=kinds(ErrorKind.REPLY),
        text=pattern(
            r"STARTTLS|TLS (is )?required|must (issue|use) (a )?(STARTTLS|TLS)|"
            r"encryption required"
        ),
        cause="The server requires encryption before it accepts this command: "
        '"{reply}".',
        fix="Set security to STARTTLS (port 587 is the usual one).",
        transient=False,
        setting="security",
    ),
)

_AUTH = (
    Entry(
        id="auth-not-offered-before-tls",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.NOT_OFFERED),
        when=_no_auth_before_tls,
        cause="The server offers no AUTH on an unencrypted connection; most servers "
        "offer it only after STARTTLS.",
        fix="Set security to STARTTLS (port 587) so the server offers AUTH.",
        transient=False,
        setting="security",
    ),
    Entry(
        id="auth-not-offered",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.NOT_OFFERED),
        cause="The server does not offer the {mechanism} auth mechanism; it offers: "
        "{offered}.",
        fix="Set the auth mechanism to one the server offers ({offered}): "
        "UserPassword covers PLAIN and LOGIN. With no mechanism offered, clear the "
        "login to send without authenticating.",
        transient=False,
        setting="mechanism",
    ),
    Entry(
        id="auth-mechanism-rejected",
        steps=steps(Step.AUTH),
        reply_codes=codes(504),
        cause='The server rejected the auth mechanism: "{reply}". It offers: '
        "{offered}.",
        fix="Set the auth mechanism to one the server offers ({offered}).",
        transient=False,
        setting="mechanism",
    ),
    Entry(
        id="auth-unsupported",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.UNSUPPORTED),
        cause="{error}.",
        fix="Choose another auth mechanism the server offers ({offered}).",
        transient=False,
        setting="mechanism",
    ),
    Entry(
        id="auth-credentials-rejected",
        steps=steps(Step.AUTH),
        reply_codes=codes(535),
        cause='The server rejected the login and password: "{reply}".',
        fix="Check the login and password. Some providers need an app password "
        "instead of the account password, or SMTP AUTH enabled for the mailbox.",
        transient=False,
        setting="password",
    ),
    Entry(
        id="auth-failed",
        steps=steps(Step.AUTH),
        reply_class=5,
        cause='Authentication failed: "{reply}".',
        fix="Check the login, password and auth mechanism.",
        transient=False,
        setting="password",
    ),
    Entry(
        id="auth-required",
        reply_codes=codes(530, 550, 553, 554),
        text=pattern(
            r"authentication (is )?required|authenticate first|must authenticate|"
            r"not authenticated|please authenticate|SMTP AUTH required"
        ),
        cause="The server accepts mail only from authenticated clients, and this "
        'session did not log in: "{reply}".',
        fix="Set login and password (and the auth mechanism the server offers) so "
        "Postroom authenticates before sending.",
        transient=False,
        setting="login",
    ),
    # Google: "534-5.7.9 Application-specific password required. Learn more at
    # 534 5.7.9 https://support.google.com/mail/?p=InvalidSecondFactor".
    Entry(
        id="gmail-app-password-required",
        reply_codes=codes(534),
        enhanced=enhanced("5.7.9"),
        text=pattern(r"Application-specific password required|InvalidSecondFactor"),
        cause="Google refused the account password because the account uses "
        '2-Step Verification: "{reply}".',
        fix="Create an app password in the Google account (Security, App "
        "passwords) and set it as the profile's password, or set the auth "
        "mechanism to XOAUTH2.",
        transient=False,
        setting="password",
    ),
    # RFC 4954: 534 5.7.9 "Authentication mechanism is too weak". Providers
    # with two-step verification other than Google's send it with their own
    # words when the account password is used where an app password is due.
    Entry(
        id="auth-mechanism-too-weak",
        reply_codes=codes(534),
        enhanced=enhanced("5.7.9"),
        cause="The server refused this login over this auth mechanism as too "
        'weak: "{reply}". Providers with two-step verification answer so when '
        "the account password is used instead of an app password.",
        fix="If the account uses two-step verification, create an app password "
        "at the provider and set it as the profile's password. Otherwise set "
        "the auth mechanism to a stronger one the server offers (CRAM-MD5, NTLM, "
        "Kerberos or XOAUTH2), or set security to STARTTLS or TLS.",
        transient=False,
        setting="password",
    ),
    # Google: "534-5.7.14 <https://accounts.google.com/signin/continue?...>
    # Please log in via your web browser and then try again."
    Entry(
        id="gmail-sign-in-blocked",
        reply_codes=codes(534),
        enhanced=enhanced("5.7.14"),
        cause="Google blocked the sign-in as unusual and wants the account owner "
        'to confirm it in a web browser: "{reply}".',
        fix="Sign in to the Google account in a browser and confirm the recent "
        "sign-in, then set an app password as the profile's password (or use "
        "XOAUTH2).",
        transient=False,
        setting="password",
    ),
    # Google: "535-5.7.8 Username and Password not accepted. For more
    # information, go to 535 5.7.8 https://support.google.com/mail/?p=BadCredentials".
    Entry(
        id="gmail-bad-credentials",
        reply_codes=codes(535),
        text=pattern(r"Username and Password not accepted|BadCredentials"),
        # Google sends the same reply to a rejected OAuth token, for which
        # an app password is the wrong advice.
        when=lambda context: context.mechanism != "XOAUTH2",
        cause='Google rejected the login and password: "{reply}". Google accepts '
        "only app passwords or OAuth for SMTP, not the account password.",
        fix="Set password to an app password created in the Google account "
        "(2-Step Verification must be on) and login to the full address, or set "
        "the auth mechanism to XOAUTH2.",
        transient=False,
        setting="password",
    ),
    # Microsoft 365: "535 5.7.139 Authentication unsuccessful,
    # SmtpClientAuthentication is disabled for the Tenant. Visit
    # https://aka.ms/smtp_auth_disabled for more information."
    Entry(
        id="m365-smtp-auth-disabled-tenant",
        enhanced=enhanced("5.7.139"),
        text=pattern(r"SmtpClientAuthentication is disabled"),
        cause="Microsoft 365 has SMTP AUTH turned off for the whole organization "
        '(tenant), so no mailbox may log in over SMTP: "{reply}".',
        fix="Ask the Microsoft 365 administrator to turn SMTP AUTH on for the "
        "organization (Exchange admin center, Settings, Mail flow) and to enable "
        "Authenticated SMTP for this mailbox, or set the auth mechanism to "
        "XOAUTH2.",
        transient=False,
        setting="provider",
    ),
    # Microsoft 365: "535 5.7.139 Authentication unsuccessful, user is locked
    # by your organization's security defaults policy."
    Entry(
        id="m365-security-defaults",
        enhanced=enhanced("5.7.139"),
        text=pattern(r"security defaults"),
        cause="Microsoft Entra security defaults block password sign-in over "
        'SMTP for this account: "{reply}".',
        fix="Set the auth mechanism to XOAUTH2, or ask the Microsoft 365 "
        "administrator to replace security defaults with Conditional Access "
        "policies that allow SMTP AUTH for this mailbox.",
        transient=False,
        setting="mechanism",
    ),
    # Microsoft 365: "535 5.7.139 Authentication unsuccessful, basic
    # authentication is disabled."
    Entry(
        id="m365-basic-auth-disabled",
        enhanced=enhanced("5.7.139"),
        text=pattern(r"basic authentication is disabled"),
        cause="Microsoft 365 no longer accepts a password for SMTP AUTH on this "
        'mailbox: "{reply}".',
        fix="Set the auth mechanism to XOAUTH2.",
        transient=False,
        setting="mechanism",
    ),
    # Microsoft 365: "535 5.7.139 Authentication unsuccessful, the request did
    # not meet the criteria to be authenticated successfully. Contact your
    # administrator."
    Entry(
        id="m365-smtp-auth-blocked",
        enhanced=enhanced("5.7.139"),
        cause="Microsoft 365 refused SMTP AUTH for this mailbox by policy "
        "(Authenticated SMTP off for the mailbox, or a sign-in policy): "
        '"{reply}".',
        fix="Ask the Microsoft 365 administrator to enable Authenticated SMTP for "
        "this mailbox (Microsoft 365 admin center, Active users, Mail, Manage "
        "email apps) and to check Conditional Access, or set the auth mechanism "
        "to XOAUTH2.",
        transient=False,
        setting="provider",
    ),
    # Microsoft 365: "535 5.7.3 Authentication unsuccessful".
    Entry(
        id="m365-authentication-unsuccessful",
        reply_codes=codes(535),
        enhanced=enhanced("5.7.3"),
        text=pattern(r"Authentication unsuccessful"),
        # On-premises Exchange sends the same reply to a failed NTLM or
        # Kerberos login, where this fix (mailbox address, XOAUTH2) is wrong.
        when=lambda context: context.mechanism not in ("NTLM", "Kerberos"),
        cause="Microsoft 365 or Exchange rejected the login: "
        '"{reply}". Either the password is wrong or the mailbox may not use '
        "SMTP AUTH.",
        fix="Check the login (the full mailbox address) and password; if they "
        "are right, ask the administrator to enable Authenticated SMTP for the "
        "mailbox, or set the auth mechanism to XOAUTH2 where password sign-in "
        "is blocked.",
        transient=False,
        setting="password",
    ),
    # Microsoft 365: "530 5.7.57 Client not authenticated to send mail" or
    # "530 5.7.57 SMTP; Client was not authenticated to send anonymous mail
    # during MAIL FROM".
    Entry(
        id="m365-client-not-authenticated",
        enhanced=enhanced("5.7.57"),
        text=pattern(r"not authenticated"),
        cause="Microsoft 365 accepts mail on this server only from an "
        'authenticated mailbox, and this session did not log in: "{reply}".',
        fix="Set login to the mailbox address and password to its password (with "
        "security STARTTLS on port 587); if they are set, SMTP AUTH is off for "
        "the mailbox or the tenant.",
        transient=False,
        setting="login",
    ),
)

_SENDER = (
    # Microsoft 365: "550 5.7.60 SMTP; Client does not have permissions to send
    # as this sender"; Exchange Server sends the same text with 550 5.7.1.
    Entry(
        id="m365-send-as-denied",
        text=pattern(r"permissions? to send as this sender"),
        cause="The mailbox you log in with may not send as the From address: "
        '"{reply}".',
        fix="Set from_address to the login's own address, or have the "
        "administrator grant the login's mailbox Send As permission on the From "
        "address (or add the address as an alias of that mailbox).",
        transient=False,
        setting="from_address",
    ),
    # Microsoft 365: "554 5.2.252 SendAsDenied; user@x not allowed to send as
    # y; STOREDRV.Submission.Exception:SendAsDeniedException..." (older
    # tenants reply 554 5.2.0 with the same exception name).
    Entry(
        id="m365-send-as-denied-store",
        text=pattern(r"SendAsDenied|send as denied"),
        cause="Microsoft 365 accepted the login but refused to submit a message "
        'whose From address the mailbox does not own: "{reply}".',
        fix="Set from_address to the login's mailbox address, or have the "
        "administrator add the From address as an alias of that mailbox or grant "
        "Send As permission on it.",
        transient=False,
        setting="from_address",
    ),
    # Microsoft 365 counts the submitting mailbox's Sent Items against its
    # quota: "554 5.2.2 mailbox full;
    # STOREDRV.Submission.Exception:QuotaExceededException...".
    Entry(
        id="m365-sender-mailbox-full",
        text=pattern(r"QuotaExceededException|MapiExceptionShutoffQuotaExceeded"),
        cause="The mailbox you log in with is full, and Microsoft 365 refuses to "
        'submit mail from a full mailbox: "{reply}".',
        fix="Empty the login mailbox's Sent Items (or set a retention policy that "
        "does), or ask the administrator for a larger mailbox.",
        transient=False,
        setting="provider",
    ),
    # Postfix with reject_sender_login_mismatch: "553 5.7.1 <x@example.com>:
    # Sender address rejected: not owned by user y@example.com".
    Entry(
        id="sender-not-owned",
        text=pattern(r"not owned by (auth )?user"),
        cause="The server lets each login send only from its own addresses, and "
        'the From address is not one of them: "{reply}".',
        fix="Set from_address to an address the login owns, or ask the mail "
        "administrator to allow this login to send as the From address (an "
        "alias or allowed sender).",
        transient=False,
        setting="from_address",
    ),
    # Postfix: "553 5.7.1 <x@example.com>: Sender address rejected: not logged in".
    Entry(
        id="sender-not-logged-in",
        text=pattern(r"Sender address rejected: not logged in"),
        cause="The server accepts this sender address only from a logged-in "
        'client: "{reply}".',
        fix="Set login and password so Postroom authenticates before sending.",
        transient=False,
        setting="login",
    ),
    # Zoho: "553 Relaying disallowed as <address>".
    Entry(
        id="zoho-relaying-disallowed",
        text=pattern(r"Relaying disallowed"),
        cause="Zoho accepts only From addresses that belong to the login's "
        'account or its aliases: "{reply}".',
        fix="Set from_address to the Zoho account's address or one of its "
        "aliases, or add the address as an alias in Zoho Mail.",
        transient=False,
        setting="from_address",
    ),
    # SendGrid: "550 The from address does not match a verified Sender
    # Identity. Mail cannot be sent until this error is resolved. ..."
    Entry(
        id="sendgrid-sender-identity",
        text=pattern(r"does not match a verified Sender Identity"),
        cause="SendGrid sends only from verified sender identities, and the From "
        'address is not one: "{reply}".',
        fix="Verify the From address (Single Sender Verification) or its domain "
        "(Domain Authentication) in SendGrid, or set from_address to an address "
        "that is already verified.",
        transient=False,
        setting="from_address",
    ),
    # Amazon SES: "554 Message rejected: Email address is not verified. The
    # following identities failed the check in region US-EAST-1: ..."
    Entry(
        id="ses-identity-not-verified",
        text=pattern(r"Email address is not verified"),
        cause="Amazon SES sends only from identities verified in this region, "
        "and while the account is in the sandbox only to verified recipients: "
        '"{reply}".',
        fix="Verify the From address or its domain in the SES console of the "
        "region the host names; in the sandbox, verify the recipients too or "
        "request production access.",
        transient=False,
        setting="from_address",
    ),
    # Mailgun: "Sandbox subdomains are for test purposes only. Please add your
    # own domain or add the address to authorized recipients in Account
    # Settings." and "Free accounts are for test purposes only. ..."
    Entry(
        id="mailgun-sandbox-recipient",
        text=pattern(
            r"(Sandbox subdomains|Free accounts) are for test purposes only|"
            r"authorized recipients"
        ),
        cause="The Mailgun sandbox domain delivers only to authorized "
        'recipients: "{reply}".',
        fix="Add the recipient to the authorized recipients in Mailgun, or send "
        "from your own verified domain (set login to that domain's SMTP "
        "credentials and from_address to an address on it).",
        transient=False,
        setting="provider",
    ),
    # Mailgun: "421 Domain sandbox....mailgun.org is not allowed to send:
    # Please activate your Mailgun account. ..." is a 4xx that waiting does
    # not fix.
    Entry(
        id="mailgun-domain-not-allowed",
        text=pattern(r"Domain \S+ is not allowed to send"),
        cause='Mailgun does not let this domain send yet: "{reply}".',
        fix="Activate the Mailgun account and verify the sending domain as the "
        "reply says; then send a test email again.",
        transient=False,
        setting="provider",
    ),
    # Postfix: "554 5.7.1 <bob@example.com>: Relay access denied" (454 4.7.1
    # with defer_unauth_destination, still not fixed by waiting).
    Entry(
        id="relay-access-denied",
        text=pattern(
            r"Relay(ing)? access denied|relay(ing)? (is )?(denied|not permitted|"
            r"prohibited)|not permitted to relay|relay not permitted"
        ),
        cause="The server refuses to pass mail on to other domains for this "
        'client: "{reply}". Relays accept such mail only from authenticated '
        "clients or allowed IP addresses.",
        fix="Set login and password so Postroom authenticates, or ask the relay's "
        "administrator to allow this server's IP address to relay (Postfix "
        "mynetworks, an Exchange receive connector).",
        transient=False,
        setting="login",
    ),
    # Exchange Server: "550 5.7.54 SMTP; Unable to relay recipient in
    # non-accepted domain"; older versions reply "550 5.7.1 Unable to relay".
    Entry(
        id="exchange-unable-to-relay",
        text=pattern(r"Unable to relay"),
        cause="Exchange refuses to relay to a domain it does not host for an "
        'anonymous client: "{reply}".',
        fix="Set login and password of a mailbox so Postroom authenticates, or "
        "ask the Exchange administrator for a receive connector that allows "
        "this server's IP address to relay.",
        transient=False,
        setting="login",
    ),
    Entry(
        id="sender-rejected",
        steps=steps(Step.MAIL_FROM),
        reply_class=5,
        cause='The server rejected the envelope sender (MAIL FROM): "{reply}".',
        fix="Set from_address to an address the provider lets this login send "
        "from (the account's own address, an alias or a verified sender).",
        transient=False,
        setting="from_address",
    ),
)

_RECIPIENTS_AND_SIZE = (
    Entry(
        id="recipient-unknown",
        enhanced=enhanced("5.1.1", "5.1.10"),
        cause='The recipient\'s server says the mailbox does not exist: "{reply}".',
        fix="Check the recipient address for typing errors; the message to the "
        "other recipients is not affected.",
        transient=False,
        setting="recipient",
    ),
    Entry(
        id="recipient-unknown-text",
        steps=steps(Step.RCPT_TO),
        text=pattern(
            r"user unknown|unknown user|no such user|mailbox (unavailable|not "
            r"found)|does not exist|RecipNotFound|recipient not found"
        ),
        cause='The recipient\'s server says the mailbox does not exist: "{reply}".',
        fix="Check the recipient address for typing errors; the message to the "
        "other recipients is not affected.",
        transient=False,
        setting="recipient",
    ),
    # Postfix and Gmail reply "452 4.5.3 ... too many recipients"; some
    # servers use 552 5.5.3. Either way the refused recipients succeed in a
    # later transaction of their own, so both are transient.
    Entry(
        id="too-many-recipients",
        text=pattern(r"too many recipients|maximum (limit of )?\d* ?recipients"),
        cause="The server accepts only a limited number of recipients per "
        'message: "{reply}".',
        fix="Nothing to change: Postroom sends to the refused recipients in a "
        "later attempt. To avoid the delay, split long recipient lists into "
        "several messages.",
        transient=True,
        setting="message",
    ),
    Entry(
        id="too-many-recipients-status",
        enhanced=enhanced("4.5.3", "5.5.3"),
        cause="The server accepts only a limited number of recipients per "
        'message: "{reply}".',
        fix="Nothing to change: Postroom sends to the refused recipients in a "
        "later attempt. To avoid the delay, split long recipient lists into "
        "several messages.",
        transient=True,
        setting="message",
    ),
    Entry(
        id="message-too-large",
        reply_codes=codes(552, 554, 523),
        text=pattern(
            r"size exceed|too (large|big)|exceeds? (the )?(fixed |maximum )?"
            r"(message )?size|message size|size limit"
        ),
        when=_size_not_announced,
        cause='The server refused the message as too large: "{reply}". The message '
        "is {size} bytes; the server announced no SIZE limit in its EHLO reply, "
        "so its limit is not known in advance.",
        fix="Make the message smaller (fewer or smaller attachments, or a link "
        "instead of the file), or ask the provider for its size limit.",
        transient=False,
        setting="message",
    ),
    Entry(
        id="message-too-large-within-size",
        reply_codes=codes(552, 554, 523),
        text=pattern(
            r"size exceed|too (large|big)|exceeds? (the )?(fixed |maximum )?"
            r"(message )?size|message size|size limit"
        ),
        when=_size_announced,
        cause='The server refused the message as too large: "{reply}". The message '
        "is {size} bytes, within the {size_limit} bytes the server announced in "
        "SIZE, so a lower limit applies (per account, or after the provider "
        "re-encodes attachments).",
        fix="Make the message smaller (fewer or smaller attachments, or a link "
        "instead of the file); aim well below {size_limit} bytes.",
        transient=False,
        setting="message",
    ),
    Entry(
        id="message-too-large-status",
        enhanced=enhanced("5.3.4", "5.2.3"),
        cause='The server refused the message as too large: "{reply}". The message '
        "is {size} bytes.",
        fix="Make the message smaller (fewer or smaller attachments, or a link "
        "instead of the file), or ask the provider for its size limit.",
        transient=False,
        setting="message",
    ),
)

# NOTE: a daily quota resets after up to 24 hours, but the retry policy may
# give up sooner (max_attempts, max_message_age_seconds). Such messages end
# as failed, with this diagnosis and "gave_up" in their last error.
_QUOTA_AND_RATE = (
    # Gmail: "550-5.4.5 Daily user sending limit exceeded." or "550 5.4.5 Daily
    # user sending quota exceeded."; Amazon SES: "454 Throttling failure: Daily
    # message quota exceeded."; Exchange Online: "554 5.2.0
    # STOREDRV.Submission.Exception:SubmissionQuotaExceededException".
    Entry(
        id="quota-exceeded",
        text=pattern(
            r"quota exceeded|sending (limit|quota) exceeded|exceeded (its|the|your) "
            r"(24-hour |daily )?(sending )?(limit|quota)|SubmissionQuotaExceeded|"
            r"daily (user )?(sending |message )?(limit|quota)"
        ),
        cause="The account has used up the provider's sending quota for now: "
        '"{reply}".',
        fix="Wait until the quota resets (most providers count per day) and "
        "Postroom retries, or ask the provider for a higher quota; spread large "
        "jobs over time.",
        transient=True,
        setting="provider",
    ),
    # Gmail: "421 4.7.0 Try again later, closing connection." and "454 4.7.0
    # Too many login attempts, please try again later."; Exchange Online:
    # "451 4.7.500 Server busy. Please try again later from [x]."; Amazon SES:
    # "454 Throttling failure: Maximum sending rate exceeded."
    Entry(
        id="rate-limited",
        reply_class=4,
        text=pattern(
            # SES replies "Throttling failure: Daily message quota exceeded"
            # for its quota, which quota-exceeded explains.
            r"try again later|server busy|throttl(ed|ing)(?! failure: Daily)|"
            r"rate (limit|exceeded)|"
            r"too many (messages|connections|login attempts|concurrent)|"
            r"sending rate|concurrent connections limit"
        ),
        cause="The provider refuses for now: it is busy, or slows this client down "
        'because it sends, connects or logs in too often: "{reply}".',
        fix="Postroom retries with backoff. If it keeps happening, send fewer "
        "messages at once through this profile or ask the provider to raise the "
        "limit.",
        transient=True,
        setting="provider",
    ),
    Entry(
        id="rate-limited-status",
        enhanced=enhanced("4.7.500", "4.3.2"),
        cause='The provider is slowing this client down for now: "{reply}".',
        fix="Postroom retries with backoff. If it keeps happening, send fewer "
        "messages at once through this profile or ask the provider to raise the "
        "limit.",
        transient=True,
        setting="provider",
    ),
)

_PASTED = (
    # Windows CDO (System.Web.Mail, classic ASP, VBScript) reports a failed
    # login or a refusal to send as "The transport error code was 0x80040217.
    # The server response was not available", without the server's reply.
    Entry(
        id="windows-cdo-logon-failure",
        text=pattern(r"0x80040217|80040217"),
        cause="Windows CDO error 0x80040217: the SMTP server refused the login, "
        "or refused to send for this account. CDO does not show the server's "
        "own reply.",
        fix="Check the login and password (an app password for Gmail, Yahoo, "
        "iCloud and Fastmail; Authenticated SMTP enabled for Microsoft 365 "
        "mailboxes) and that the From address belongs to the login; send a "
        "Postroom test email through the same server to see its actual reply.",
        transient=False,
        setting="password",
    ),
)

_GENERIC = (
    Entry(
        id="greeting-timeout",
        steps=steps(Step.GREETING),
        kinds=kinds(ErrorKind.TIMEOUT),
        cause="{host} accepted the connection on port {port} but sent no SMTP "
        "greeting within the timeout.",
        fix="Check the port and security: a server that expects implicit TLS (port "
        "465) waits silently for a TLS handshake; a slow server needs a longer "
        "connect timeout.",
        transient=True,
        setting="security",
    ),
    Entry(
        id="greeting-garbled",
        steps=steps(Step.GREETING),
        kinds=kinds(ErrorKind.PROTOCOL),
        cause="The server on port {port} sent something that is not an SMTP greeting "
        "({error}).",
        fix="Check the port: it may belong to another service, or expect implicit "
        "TLS (set security to TLS for port 465).",
        transient=False,
        setting="port",
    ),
    Entry(
        id="protocol-error",
        kinds=kinds(ErrorKind.PROTOCOL),
        cause="The server broke the SMTP protocol during {step}: {error}.",
        fix="Check that host and port point at an SMTP server; if they do, give the "
        "transcript to the provider.",
        transient=False,
        setting="provider",
    ),
    Entry(
        id="disconnected",
        kinds=kinds(ErrorKind.DISCONNECTED),
        cause="The server closed the connection unexpectedly during {step}.",
        fix="Retry later; if it keeps happening, check the security setting and ask "
        "the provider whether it drops connections from this IP address.",
        transient=True,
        setting="provider",
    ),
    Entry(
        id="timeout",
        kinds=kinds(ErrorKind.TIMEOUT),
        cause="The server did not reply during {step} within the command timeout.",
        fix="Retry later; if the server is slow, raise the command timeout.",
        transient=True,
        setting="command_timeout",
    ),
    Entry(
        id="smtputf8-not-offered",
        kinds=kinds(ErrorKind.NOT_OFFERED),
        text=pattern(r"SMTPUTF8"),
        cause="An address has non-ASCII characters in its local part, which needs "
        "the SMTPUTF8 extension, and this server does not offer it.",
        fix="Use an ASCII address for that recipient or sender, or send through a "
        "provider that supports SMTPUTF8.",
        transient=False,
        setting="provider",
    ),
    Entry(
        id="message-too-large-for-size",
        kinds=kinds(ErrorKind.TOO_LARGE),
        cause="The message is {size} bytes, more than the {size_limit} bytes the "
        "server announced in its SIZE extension.",
        fix="Make the message smaller (fewer or smaller attachments).",
        transient=False,
        setting="message",
    ),
    Entry(
        id="transient-reply",
        reply_class=4,
        cause='The server refused for now during {step}: "{reply}".',
        fix="Postroom retries later; if the refusal persists, give the reply to "
        "the provider.",
        transient=True,
        setting="provider",
    ),
    Entry(
        id="permanent-reply",
        reply_class=5,
        cause='The server refused during {step}: "{reply}".',
        fix="Read the server's reply for the reason; give it to the provider if it is "
        "not clear.",
        transient=False,
        setting="provider",
    ),
)

CATALOGUE: tuple[Entry, ...] = (
    _CONNECTION
    + _TLS
    + _AUTH
    + _SENDER
    + _RECIPIENTS_AND_SIZE
    + _QUOTA_AND_RATE
    + _PASTED
    + _GENERIC
)

FALLBACK = Entry(
    id="unknown",
    cause="The session failed during {step}: {reply}{error}.",
    fix="Check the profile's server, port and security; give the transcript to the "
    "provider if the reason is not clear.",
    transient=True,
    setting="provider",
)


# Enterprise and OAuth authentication: NTLM, Kerberos (SASL GSSAPI), XOAUTH2
# and TLS client certificates. Most of these failures happen on the client
# side (at the KDC or the OAuth token endpoint) before the SMTP server
# replies, so they match the Kerberos library's or the provider's own words.


def _mechanism_is(label: str) -> Callable[[Context], bool]:
    return lambda context: context.mechanism == label


def _oauth_error_in(*errors: str) -> Callable[[Context], bool]:
    return lambda context: context.fact("oauth_error") in errors


_NTLM = (
    Entry(
        id="ntlm-domain-mismatch",
        steps=steps(Step.AUTH),
        reply_codes=codes(535),
        when=lambda context: (
            context.mechanism == "NTLM" and bool(context.fact("ntlm_domain_mismatch"))
        ),
        cause='The server rejected the login: "{reply}". The login names the NTLM '
        "domain {ntlm_login_domain}, but the server belongs to the domain "
        "{ntlm_server_domain}.",
        fix="Set the login to {ntlm_server_domain}\\{ntlm_user} (the DOMAIN\\user "
        "form) or to the account's user principal name (user@domain), and check "
        "the password.",
        transient=False,
        setting="login",
    ),
)

_KERBEROS = (
    Entry(
        id="kerberos-not-installed",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.UNSUPPORTED),
        text=pattern(r"python-gssapi"),
        cause="Kerberos needs the python-gssapi package, and this installation of "
        "Postroom does not have it.",
        fix="Install Postroom with Kerberos support: pip install 'postroom[kerberos]' "
        "(it compiles against libkrb5, so install libkrb5-dev and a C compiler "
        "first), then restart Postroom.",
        transient=False,
        setting="installation",
    ),
    Entry(
        id="kerberos-password-rejected",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(
            r"Preauthentication failed|Password incorrect|Decrypt integrity check"
        ),
        cause="The Kerberos KDC rejected the password of {principal} "
        "({kerberos_error}).",
        fix="Check the password: it is the account's domain (Kerberos) password. If "
        "it was changed recently, save the new one in the profile.",
        transient=False,
        setting="password",
    ),
    Entry(
        id="kerberos-principal-unknown",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Client .* not found in Kerberos database"),
        cause="The KDC does not know the principal {principal} ({kerberos_error}).",
        fix="Set the login to the account's Kerberos principal, user@REALM with the "
        "realm in capitals (for example alice@EXAMPLE.COM). A login without a realm "
        "takes the default realm of the Kerberos configuration.",
        transient=False,
        setting="login",
    ),
    Entry(
        id="kerberos-kdc-unreachable",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Cannot contact any KDC"),
        cause="No KDC of the realm answered ({kerberos_error}).",
        fix="Check the kdc entries of the realm in the Kerberos configuration "
        "(kerberos_config, else /etc/krb5.conf) and that this machine reaches the "
        "KDC on port 88. Postroom retries in the meantime.",
        transient=True,
        setting="kerberos_config",
    ),
    Entry(
        id="kerberos-realm-unknown",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Cannot find KDC for realm|Cannot resolve network address"),
        cause="The Kerberos configuration names no KDC for the realm of {principal} "
        "({kerberos_error}).",
        fix="Add the realm and its KDCs to the Kerberos configuration and set "
        "kerberos_config to it, or correct the realm in the login.",
        transient=False,
        setting="kerberos_config",
    ),
    Entry(
        id="kerberos-clock-skew",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Clock skew too great"),
        cause="This machine's clock differs from the KDC's by more than Kerberos "
        "allows (5 minutes unless the realm sets otherwise), so the KDC refuses "
        "the request ({kerberos_error}).",
        fix="Synchronize this machine's clock with the domain's time source (NTP), "
        "then send again.",
        transient=False,
        setting="clock",
    ),
    Entry(
        id="kerberos-service-principal-unknown",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Server .* not found in Kerberos database"),
        cause="The KDC has no service principal {service_principal}, so it cannot "
        "issue a ticket for the SMTP server ({kerberos_error}).",
        fix="Set kerberos_service_principal to the principal registered for the "
        "SMTP server (ask its administrator), or set the outbound server to the "
        "host name that principal names instead of an address or an alias.",
        transient=False,
        setting="kerberos_service_principal",
    ),
    Entry(
        id="kerberos-keytab-unusable",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        text=pattern(r"Key table|key table entry|keytab"),
        cause="The keytab cannot give a key for {principal} ({kerberos_error}).",
        fix="Set kerberos_keytab to a keytab that holds {principal} (check with "
        "`klist -k FILE`) and that the Postroom process can read.",
        transient=False,
        setting="kerberos_keytab",
    ),
    Entry(
        id="kerberos-ticket-rejected",
        steps=steps(Step.AUTH),
        reply_class=5,
        when=_mechanism_is("Kerberos"),
        cause="The SMTP server did not accept the Kerberos ticket for "
        '{service_principal}: "{reply}".',
        fix="Check that kerberos_service_principal is the principal in the server's "
        "keytab (with its current key version), that the server's clock is in "
        "sync, and that {principal} may send through this server.",
        transient=False,
        setting="kerberos_service_principal",
    ),
)

_RECONNECT = (
    "Reconnect the account: run `postroom profile oauth connect <profile>` and sign "
    "in as {login}, or paste a new refresh token with `postroom profile oauth "
    "set-refresh-token <profile>`."
)

_XOAUTH2 = (
    Entry(
        id="oauth-refresh-token-rejected",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=_oauth_error_in("invalid_grant"),
        cause="The OAuth provider refused to refresh the access token "
        "({oauth_error}: {oauth_error_description}). The refresh token has expired "
        "or was revoked: consent withdrawn, password changed, or sessions revoked "
        "by an administrator.",
        fix=_RECONNECT,
        transient=False,
        setting="oauth_refresh_token",
    ),
    Entry(
        id="oauth-client-rejected",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=_oauth_error_in("invalid_client", "unauthorized_client"),
        cause="The OAuth provider rejected the client ({oauth_error}: "
        "{oauth_error_description}): the client secret is wrong or has expired, or "
        "the client id is wrong.",
        fix="Set oauth_client_secret to a current secret of the app registration "
        "(secrets expire) and check oauth_client_id. " + _RECONNECT,
        transient=False,
        setting="oauth_client_secret",
    ),
    Entry(
        id="oauth-scope-rejected",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=_oauth_error_in("invalid_scope"),
        cause="The OAuth provider rejected the scope ({oauth_error}: "
        "{oauth_error_description}).",
        fix="Set oauth_scope to the provider's SMTP scope "
        "(https://outlook.office.com/SMTP.Send offline_access for Microsoft 365, "
        "https://mail.google.com/ for Google). " + _RECONNECT,
        transient=False,
        setting="oauth_scope",
    ),
    Entry(
        id="oauth-not-connected",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=_oauth_error_in("not_connected", "not_configured"),
        cause="{error}.",
        fix="Set the OAuth client (oauth_provider, oauth_client_id and, for "
        "confidential clients, oauth_client_secret), then connect the account: "
        "`postroom profile oauth connect <profile>`.",
        transient=False,
        setting="oauth_refresh_token",
    ),
    Entry(
        id="oauth-token-endpoint-unavailable",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=lambda context: bool(context.fact("oauth_transient")),
        cause="The OAuth token endpoint could not issue an access token for now: "
        "{error}.",
        fix="Postroom retries later. If it persists, check oauth_token_endpoint and "
        "that this machine reaches it.",
        transient=True,
        setting="oauth_token_endpoint",
    ),
    Entry(
        id="oauth-refresh-failed",
        steps=steps(Step.AUTH),
        kinds=kinds(ErrorKind.AUTH_CLIENT),
        when=lambda context: (
            context.mechanism == "XOAUTH2" and context.fact("oauth_error") is not None
        ),
        cause="Getting an OAuth access token failed: {error}.",
        fix=_RECONNECT,
        transient=False,
        setting="oauth_refresh_token",
    ),
    Entry(
        id="xoauth2-token-rejected",
        steps=steps(Step.AUTH),
        reply_class=5,
        when=_mechanism_is("XOAUTH2"),
        cause='The server rejected the OAuth access token for {login}: "{reply}".',
        fix="Check that the login is the mailbox the account signed in as, that the "
        "scope grants SMTP (https://outlook.office.com/SMTP.Send for Microsoft 365, "
        "https://mail.google.com/ for Google), and that SMTP AUTH is enabled for "
        "the mailbox.",
        transient=False,
        setting="oauth_scope",
    ),
)

# OpenSSL's names of the TLS alerts a server sends when it wants a client
# certificate or does not accept the one it got.
_CLIENT_CERTIFICATE_ALERT = pattern(
    r"certificate.required|bad.certificate|unknown.ca|certificate.unknown|"
    r"certificate.expired|certificate.revoked"
)


def _client_certificate_refused(context: Context) -> bool:
    """Tell whether the server ended TLS the way relays refuse a client certificate.

    A bare "handshake failure" alert does not count: servers send it for
    other reasons too (no shared cipher), and tls-handshake-failed names
    the client certificate among its possible causes.

    Some send a TLS alert. Others, asyncio-based servers among them, close
    the connection right after the handshake without an alert, which the
    client sees as a disconnection before the first reply over TLS.
    """
    failure = context.failure
    if failure.kind == ErrorKind.TLS:
        return bool(_CLIENT_CERTIFICATE_ALERT.search(context.text))
    if failure.kind != ErrorKind.DISCONNECTED:
        return False
    if failure.step == Step.GREETING:
        return context.security == "tls"
    return failure.step == Step.EHLO and bool(context.fact("after_starttls"))


_CLIENT_CERTIFICATE = (
    Entry(
        id="client-certificate-required",
        when=lambda context: (
            _client_certificate_refused(context)
            and not context.fact("client_certificate")
        ),
        cause="The server ended the TLS session during the handshake or right "
        "after it, before any reply ({error}), and the profile presents no TLS "
        "client certificate. Relays that authenticate senders by certificate "
        "do this when none is presented.",
        fix="Set the profile's client certificate and key (the ones the relay's "
        "administrator issued for this sender).",
        transient=False,
        setting="client_certificate",
    ),
    Entry(
        id="client-certificate-rejected",
        when=lambda context: (
            _client_certificate_refused(context)
            and bool(context.fact("client_certificate"))
        ),
        cause="The server ended the TLS session during the handshake or right "
        "after it, before any reply ({error}): it does not accept the profile's "
        "client certificate.",
        fix="Ask the relay's administrator which CA it trusts for client "
        "certificates, and set a certificate from that CA that has not expired.",
        transient=False,
        setting="client_certificate",
    ),
)

CATALOGUE = CATALOGUE + _NTLM + _KERBEROS + _XOAUTH2 + _CLIENT_CERTIFICATE
