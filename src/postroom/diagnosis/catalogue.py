"""The diagnosis catalogue: known SMTP failures, what they mean, what to change.

Each entry is data. To add a case, add an Entry with a new stable ``id``
(never reuse or rename one: stored diagnoses and scripts refer to them) and a
test that reproduces it against a scripted server. Entries match on the step,
the client-side error kind, the reply code, the enhanced status code
(RFC 3463) and patterns of the server's text; the most specific match wins.

Placeholders in ``cause`` and ``fix``: {host} {port} {security} {mechanism}
{login} {reply} {error} {offered} {names} {expires} {size} {size_limit}.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.diagnosis.entry import (
    Context,
    Entry,
    codes,
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


_CONNECTION = (
    Entry(
        id="dns-not-found",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.DNS),
        cause="The server name {host} cannot be resolved: DNS has no address for it "
        "({error}).",
        fix="Check the outbound server (host) for typing errors; use the exact name "
        "your provider documents, for example smtp.office365.com.",
        transient=False,
        setting="host",
    ),
    Entry(
        id="connection-refused",
        steps=steps(Step.CONNECT),
        kinds=kinds(ErrorKind.REFUSED),
        cause="{host} refused the connection on port {port}: nothing listens there, "
        "or a firewall rejects it.",
        fix="Check the outbound port: 587 is the usual submission port with "
        "STARTTLS, 465 is for implicit TLS, 25 is for server-to-server relay.",
        transient=False,
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
)

_TLS = (
    Entry(
        id="tls-on-plain-port",
        kinds=kinds(ErrorKind.TLS),
        text=_PLAIN_TEXT_PEER,
        when=lambda context: context.security == "tls",
        cause="Postroom started TLS at once (implicit TLS), but the server on port "
        "{port} answered in plain text: this port expects STARTTLS or no TLS "
        "({error}).",
        fix="Set security to STARTTLS (port 587 is the usual one), or set port to "
        "465 if the provider offers implicit TLS there.",
        transient=False,
        setting="security",
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
        fix="Check that security matches the port (STARTTLS on 587, TLS on 465); if "
        "it does, the server may only offer old TLS versions, which the provider "
        "must update.",
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
        id="starttls-required",
        reply_codes=codes(530),
        text=pattern(r"STARTTLS"),
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

CATALOGUE: tuple[Entry, ...] = _CONNECTION + _TLS + _AUTH + _GENERIC

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
    r"certificate.expired|certificate.revoked|handshake.failure"
)


def _client_certificate_refused(context: Context) -> bool:
    """Tell whether the server ended TLS the way relays refuse a client certificate.

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
