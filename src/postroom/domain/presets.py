"""Profile presets for well-known providers: server, port, security, mechanism.

Each preset carries the settings the provider documents for SMTP submission
and a short note of what the provider requires besides them (an app
password, SMTP AUTH enabled for the mailbox, a verified sender). A provider
with one server per region takes the region in the preset name, for
example ``ses-eu-west-1`` or ``zoho-eu``.

Sources: each preset with a ``documentation`` link follows that page of the
provider. The Microsoft 365, Gmail, Google relay, Yahoo and iCloud values
follow the widely published settings that third-party guides and client
issue reports quote.

NOTE: the presets without a documentation link were not checked against the
provider's own help page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postroom.domain.models import AuthMechanism, Security
from postroom.errors import InvalidInputError

# Regions with an SES SMTP endpoint, as listed in AWS's SMTP credentials
# example (SMTP_REGIONS) in the SES developer guide.
# NOTE: AWS adds regions over time; a region missing here is rejected even
# when SES serves it, until it is added to this list.
SES_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-south-1",
    "eu-north-1",
    "sa-east-1",
    "us-gov-west-1",
    "us-gov-east-1",
)


@dataclass(frozen=True)
class Preset:
    """A provider's documented SMTP submission settings."""

    name: str
    provider: str
    host: str
    port: int
    security: Security
    mechanism: AuthMechanism
    note: str
    # A login every account of the provider uses, such as SendGrid's "apikey".
    login: str | None = None
    documentation: str | None = None
    # Host per region; the preset is then named "<name>-<region>".
    regions: Mapping[str, str] = field(default_factory=dict)
    default_region: str | None = None

    def resolve(self, region: str | None) -> ResolvedPreset:
        host = self.host
        if self.regions:
            region = region or self.default_region
            if region is None:
                raise InvalidInputError(
                    f"preset {self.name!r} needs a region, for example "
                    f"{self.name}-{next(iter(self.regions))}; regions: "
                    f"{', '.join(self.regions)}",
                    field="preset",
                )
            if region not in self.regions:
                raise InvalidInputError(
                    f"{region!r} is not a known region of preset {self.name!r}; "
                    f"regions: {', '.join(self.regions)}",
                    field="preset",
                )
            host = self.regions[region]
        suffix = f"-{region}" if self.regions and region else ""
        return ResolvedPreset(
            name=f"{self.name}{suffix}",
            provider=self.provider,
            host=host,
            port=self.port,
            security=self.security,
            mechanism=self.mechanism,
            note=self.note,
            login=self.login,
            documentation=self.documentation,
            region=region if self.regions else None,
        )

    @property
    def listed_name(self) -> str:
        """The name as listed: ``ses-REGION`` when a region must be chosen."""
        if self.regions and self.default_region is None:
            return f"{self.name}-REGION"
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.listed_name,
            "provider": self.provider,
            "host": self.host,
            "port": self.port,
            "security": self.security.value,
            "mechanism": self.mechanism.value,
            "login": self.login,
            "note": self.note,
            "documentation": self.documentation,
            "regions": dict(self.regions),
            "default_region": self.default_region,
        }


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset with its region chosen: the values a profile takes."""

    name: str
    provider: str
    host: str
    port: int
    security: Security
    mechanism: AuthMechanism
    note: str
    login: str | None
    documentation: str | None
    region: str | None

    def profile_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "mechanism": self.mechanism,
        }
        if self.login is not None:
            values["login"] = self.login
        return values


PRESETS: tuple[Preset, ...] = (
    Preset(
        name="office365",
        provider="Microsoft 365 (Exchange Online)",
        host="smtp.office365.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Log in with the full mailbox address. SMTP AUTH must be on for the "
        "tenant and Authenticated SMTP enabled for the mailbox, and security "
        "defaults block password sign-in; use XOAUTH2 where passwords are refused. "
        "The From address must be the mailbox or one it may Send As.",
    ),
    Preset(
        name="outlook",
        provider="Outlook.com, Hotmail and Live",
        host="smtp-mail.outlook.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.XOAUTH2,
        note="Outlook.com requires OAuth2 (XOAUTH2); Microsoft is retiring "
        "password sign-in. Log in with the full address.",
        documentation="https://support.microsoft.com/en-us/office/"
        "pop-imap-and-smtp-settings-8361e398-8af4-4e97-b147-6c6c4ac95353",
    ),
    Preset(
        name="gmail",
        provider="Google Workspace and Gmail",
        host="smtp.gmail.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Needs an app password (2-Step Verification on); the account password "
        "is refused with 534 5.7.9. XOAUTH2 works too. The From address must be "
        "the account or one of its 'Send mail as' addresses.",
    ),
    Preset(
        name="gmail-relay",
        provider="Google Workspace SMTP relay service",
        host="smtp-relay.gmail.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="A Workspace administrator must set up the SMTP relay service and "
        "allow this server's IP address or require SMTP authentication; leave "
        "the login empty when relaying by IP address.",
    ),
    Preset(
        name="ses",
        provider="Amazon SES",
        host="email-smtp.REGION.amazonaws.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Use SES SMTP credentials, not AWS access keys. The From address or "
        "its domain must be a verified identity in this region; in the sandbox, "
        "recipients must be verified too.",
        documentation="https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html",
        regions={
            region: f"email-smtp.{region}.amazonaws.com" for region in SES_REGIONS
        },
    ),
    Preset(
        name="sendgrid",
        provider="Twilio SendGrid",
        host="smtp.sendgrid.net",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        login="apikey",
        note="The login is the word apikey and the password an API key with Mail "
        "Send permission. The From address must be a verified Sender Identity.",
        documentation="https://www.twilio.com/docs/sendgrid/for-developers/"
        "sending-email/integrating-with-the-smtp-api",
    ),
    Preset(
        name="mailgun",
        provider="Mailgun",
        host="smtp.mailgun.org",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Use the sending domain's SMTP credentials (for example "
        "postmaster@mg.example.com), not the account password. Sandbox domains "
        "deliver only to authorized recipients.",
        documentation="https://documentation.mailgun.com/docs/mailgun/user-manual/"
        "sending-messages/send-smtp",
        regions={"us": "smtp.mailgun.org", "eu": "smtp.eu.mailgun.org"},
        default_region="us",
    ),
    Preset(
        name="postmark",
        provider="Postmark",
        host="smtp.postmarkapp.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Use the Server API Token as both login and password. The From "
        "address must be a confirmed sender signature or on a verified domain.",
        documentation="https://postmarkapp.com/support/article/"
        "811-what-are-the-smtp-details-api-tokens-i-should-be-using",
    ),
    Preset(
        name="brevo",
        provider="Brevo (formerly Sendinblue)",
        host="smtp-relay.brevo.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="The login is the SMTP login shown in Brevo's SMTP settings and the "
        "password an SMTP key, not an API key. The sender must be verified.",
        documentation="https://developers.brevo.com/docs/smtp-integration",
    ),
    Preset(
        name="zoho",
        provider="Zoho Mail",
        host="smtp.zoho.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Pick the region of the account's data center. The From address must "
        "be the account's address or an alias; with two-factor authentication, "
        "use an application-specific password. Paid organization accounts use "
        "smtppro.zoho.* as host.",
        documentation="https://www.zoho.com/mail/help/zoho-smtp.html",
        regions={
            "us": "smtp.zoho.com",
            "eu": "smtp.zoho.eu",
            "in": "smtp.zoho.in",
            "au": "smtp.zoho.com.au",
            "jp": "smtp.zoho.jp",
        },
        default_region="us",
    ),
    Preset(
        name="yahoo",
        provider="Yahoo Mail",
        host="smtp.mail.yahoo.com",
        port=465,
        security=Security.TLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Needs an app password generated in Yahoo account security; the "
        "account password is refused.",
    ),
    Preset(
        name="icloud",
        provider="iCloud Mail",
        host="smtp.mail.me.com",
        port=587,
        security=Security.STARTTLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Needs an app-specific password (two-factor authentication on the "
        "Apple Account); log in with the full iCloud address.",
    ),
    Preset(
        name="fastmail",
        provider="Fastmail",
        host="smtp.fastmail.com",
        port=465,
        security=Security.TLS,
        mechanism=AuthMechanism.USER_PASSWORD,
        note="Needs an app password; the regular Fastmail password is refused. "
        "Log in with the full address.",
        documentation="https://www.fastmail.com/help/technical/servernamesandports.html",
    ),
)

# Other names operators use for the same providers.
ALIASES = {
    "microsoft365": "office365",
    "m365": "office365",
    "exchange-online": "office365",
    "hotmail": "outlook",
    "google-workspace": "gmail",
    "google": "gmail",
    "amazon-ses": "ses",
    "sendinblue": "brevo",
}

_BY_NAME = {preset.name: preset for preset in PRESETS}


def preset_names() -> list[str]:
    return [preset.listed_name for preset in PRESETS]


def find_preset(name: str) -> ResolvedPreset:
    """Resolve ``office365``, ``ses-eu-west-1`` or ``zoho-eu`` to its settings."""
    wanted = name.strip().lower()
    for alias, target in ALIASES.items():
        if wanted == alias or wanted.startswith(alias + "-"):
            wanted = target + wanted[len(alias) :]
    if wanted in _BY_NAME:
        return _BY_NAME[wanted].resolve(None)
    for preset in PRESETS:
        prefix = preset.name + "-"
        if preset.regions and wanted.startswith(prefix):
            return preset.resolve(wanted[len(prefix) :])
    raise InvalidInputError(
        f"unknown preset {name!r}; choose one of {', '.join(preset_names())} "
        "(`postroom presets` lists them)",
        field="preset",
    )
