"""Email profiles: validation, storage and the rules around system profiles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postroom.clock import utcnow
from postroom.crypto import SecretBox
from postroom.domain import profile_auth
from postroom.domain.models import (
    PENDING_STATUSES,
    AuthMechanism,
    MessageStatus,
    OutboxMessage,
    Profile,
    Security,
)
from postroom.domain.notifications import Template
from postroom.domain.oauth_providers import OAuthProvider
from postroom.domain.presets import find_preset
from postroom.domain.scheduling import Job
from postroom.domain.validation import (
    check_ca_bundle,
    check_host,
    check_length,
    check_single_line,
    column_length,
    parse_mailbox,
)
from postroom.errors import ConflictError, InvalidInputError, NotFoundError
from postroom.outbox.wakeup import notify_in_transaction

MAX_TIMEOUT_SECONDS = 600.0
MAX_CONNECTIONS = 100
MAX_POOL_IDLE_SECONDS = 3600.0

# Delivery limits where 0 or null means "no limit".
LIMIT_FIELDS = (
    "max_messages_per_second",
    "max_messages_per_minute",
    "max_messages_per_day",
    "max_recipients_per_message",
)

# Fields a caller may set, in the order they are validated and shown.
_PLAIN_FIELDS = (
    "name",
    "client",
    "host",
    "port",
    "security",
    "inbound_host",
    "inbound_port",
    "login",
    "mechanism",
    "from_address",
    "is_active",
    "ehlo_name",
    "ca_bundle",
    "connect_timeout",
    "command_timeout",
    "max_connections",
    "pool_idle_timeout",
    *LIMIT_FIELDS,
)

# Fields that may be empty: an explicit null clears them. The other plain
# fields always have a value, so null for them is rejected on update and
# means "the default" on create, where there is no stored value to keep.
_CLEARABLE_FIELDS = frozenset(
    {
        "client",
        "host",
        "inbound_host",
        "inbound_port",
        "login",
        "from_address",
        "ehlo_name",
        "ca_bundle",
        # Null is "no limit" for the rate and recipient limits.
        *LIMIT_FIELDS,
    }
)


class ProfileInput(BaseModel):
    """Fields of a profile as a caller sends them.

    On update, a field left out is unchanged, and null clears an optional
    field (see _CLEARABLE_FIELDS).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    client: str | None = None
    host: str | None = Field(
        default=None, validation_alias=AliasChoices("host", "outbound_server")
    )
    port: int | None = Field(
        default=None, validation_alias=AliasChoices("port", "outbound_port")
    )
    security: Security | None = None
    inbound_host: str | None = Field(
        default=None, validation_alias=AliasChoices("inbound_host", "inbound_server")
    )
    inbound_port: int | None = None
    login: str | None = None
    password: SecretStr | None = None
    confirm_password: SecretStr | None = None
    clear_password: bool = False
    mechanism: AuthMechanism | None = Field(
        default=None, validation_alias=AliasChoices("mechanism", "auth_mechanism")
    )
    from_address: str | None = Field(
        default=None, validation_alias=AliasChoices("from_address", "from")
    )
    is_active: bool | None = None
    ehlo_name: str | None = None
    ca_bundle: str | None = None
    connect_timeout: float | None = None
    command_timeout: float | None = None
    max_connections: int | None = None
    pool_idle_timeout: float | None = None
    max_messages_per_second: int | None = None
    max_messages_per_minute: int | None = None
    max_messages_per_day: int | None = None
    max_recipients_per_message: int | None = None
    # A provider preset (see postroom.domain.presets) that fills host, port,
    # security and mechanism; fields given explicitly override it.
    preset: str | None = None
    # Kerberos, XOAUTH2 and client certificates; see postroom.domain.profile_auth.
    kerberos_service_principal: str | None = None
    kerberos_keytab: str | None = None
    kerberos_config: str | None = None
    oauth_provider: OAuthProvider | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_token_endpoint: str | None = None
    oauth_authorization_endpoint: str | None = None
    oauth_scope: str | None = None
    oauth_refresh_token: SecretStr | None = None
    client_certificate: str | None = None
    client_key: SecretStr | None = None
    clear_client_certificate: bool = False


class ProfileView(BaseModel):
    """A profile as shown to callers: every field except the password."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    client: str | None
    is_system: bool
    is_active: bool
    host: str | None
    port: int
    security: Security
    inbound_host: str | None
    inbound_port: int | None
    login: str | None
    has_password: bool
    mechanism: AuthMechanism
    from_address: str | None
    ehlo_name: str | None
    ca_bundle: str | None
    connect_timeout: float
    command_timeout: float
    max_connections: int
    pool_idle_timeout: float
    max_messages_per_second: int | None
    max_messages_per_minute: int | None
    max_messages_per_day: int | None
    max_recipients_per_message: int | None
    kerberos_service_principal: str | None = None
    kerberos_keytab: str | None = None
    kerberos_config: str | None = None
    has_client_certificate: bool = False
    oauth: profile_auth.OAuthStatus | None = None
    # Problems that will stop mail unless an operator acts, such as an OAuth
    # refresh token about to expire.
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, profile: Profile) -> ProfileView:
        computed = {"has_password", *profile_auth.VIEW_FIELDS}
        values = {
            name: getattr(profile, name)
            for name in cls.model_fields
            if name not in computed
        }
        return cls(
            has_password=profile.password_encrypted is not None,
            **values,
            **profile_auth.view_values(profile),
        )


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _check_port(value: int, field: str) -> None:
    if not 1 <= value <= 65535:
        raise InvalidInputError(
            f"must be between 1 and 65535, got {value}", field=field
        )


def _check_timeout(value: float, field: str) -> None:
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise InvalidInputError(
            f"must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g} seconds, "
            f"got {value:g}",
            field=field,
        )


def _check_name(value: str) -> str:
    value = check_single_line(value.strip(), "name")
    if not value:
        raise InvalidInputError("is required", field="name")
    check_length(value, "name", column_length(Profile.name))
    if "/" in value:
        raise InvalidInputError("must not contain '/'", field="name")
    return value


def _normalize(state: dict[str, Any], is_system: bool) -> dict[str, Any]:
    """Check a profile's complete state and return it cleaned up."""
    state = dict(state)
    # Before any stripping: a CR or LF anywhere is refused, not trimmed away.
    for field, value in state.items():
        if isinstance(value, str):
            check_single_line(value, field)
    state["name"] = _check_name(state["name"] or "")

    for field in ("client", "login", "ehlo_name", "ca_bundle"):
        value = _blank_to_none(state[field])
        state[field] = check_single_line(value, field) if value else None
    # Checked before the host and path checks, so an overlong value gets the
    # message about its length rather than a less direct one.
    for field in ("client", "host", "inbound_host", "login", "ehlo_name", "ca_bundle"):
        if state[field] is not None:
            limit = column_length(getattr(Profile, field))
            check_length(state[field].strip(), field, limit)

    state["host"] = _blank_to_none(state["host"])
    if state["host"] is not None:
        state["host"] = check_host(state["host"], "host")
    elif not is_system:
        raise InvalidInputError(
            "outbound server is required, for example smtp.office365.com",
            field="host",
        )
    elif state["is_active"]:
        raise InvalidInputError(
            "outbound server is required before the profile can be active",
            field="host",
        )

    _check_port(state["port"], "port")

    state["inbound_host"] = _blank_to_none(state["inbound_host"])
    if (state["inbound_host"] is None) != (state["inbound_port"] is None):
        missing = "inbound_port" if state["inbound_port"] is None else "inbound_host"
        raise InvalidInputError(
            "inbound server and inbound port must be set together, or neither",
            field=missing,
        )
    if state["inbound_host"] is not None:
        state["inbound_host"] = check_host(state["inbound_host"], "inbound_host")
        _check_port(state["inbound_port"], "inbound_port")

    state["from_address"] = _blank_to_none(state["from_address"])
    if state["from_address"] is not None:
        state["from_address"] = str(
            parse_mailbox(state["from_address"], "from_address")
        )
        # The rendered form is what is stored, so it is what must fit.
        check_length(
            state["from_address"], "from_address", column_length(Profile.from_address)
        )
    elif state["is_active"]:
        raise InvalidInputError(
            "a From address is required before the profile can be active, "
            "for example 'Orders <orders@example.com>'",
            field="from_address",
        )

    if state["ehlo_name"] is not None:
        state["ehlo_name"] = check_host(state["ehlo_name"], "ehlo_name")

    if state["ca_bundle"] is not None:
        check_ca_bundle(state["ca_bundle"], "ca_bundle")

    _check_timeout(state["connect_timeout"], "connect_timeout")
    _check_timeout(state["command_timeout"], "command_timeout")
    _check_limits(state)
    return state


def _check_limits(state: dict[str, Any]) -> None:
    if not 1 <= state["max_connections"] <= MAX_CONNECTIONS:
        raise InvalidInputError(
            f"must be between 1 and {MAX_CONNECTIONS}, got {state['max_connections']}",
            field="max_connections",
        )
    if not 0 <= state["pool_idle_timeout"] <= MAX_POOL_IDLE_SECONDS:
        raise InvalidInputError(
            f"must be between 0 and {MAX_POOL_IDLE_SECONDS:g} seconds, "
            f"got {state['pool_idle_timeout']:g}",
            field="pool_idle_timeout",
        )
    for field in LIMIT_FIELDS:
        value = state[field]
        if value is not None and value < 0:
            raise InvalidInputError(
                f"must be a positive number, or 0 for no limit, got {value}",
                field=field,
            )
        # 0 is how the CLI and API say "no limit"; it is stored as NULL.
        state[field] = value or None


def _new_password(data: ProfileInput, login: str | None) -> str | None:
    """Return the new password, or None to keep the stored one.

    ``login`` is the profile's login after the change: a password is sent
    only with a login, so one without is rejected.
    """
    if data.password is None or data.password.get_secret_value() == "":
        if (
            data.confirm_password is not None
            and data.confirm_password.get_secret_value()
        ):
            raise InvalidInputError(
                "is set but password is empty; enter the password in both fields",
                field="confirm_password",
            )
        return None
    password = data.password.get_secret_value()
    check_single_line(password, "password")
    if data.confirm_password is None:
        raise InvalidInputError(
            "is required when a password is set; repeat the password",
            field="confirm_password",
        )
    if data.confirm_password.get_secret_value() != password:
        raise InvalidInputError(
            "does not match password; enter the same password in both fields",
            field="confirm_password",
        )
    if login is None:
        raise InvalidInputError(
            "is only used together with a login; set login as well, or leave the "
            "password out",
            field="password",
        )
    return password


def _defaults() -> dict[str, Any]:
    return {
        "name": None,
        "client": None,
        "host": None,
        "port": 587,
        "security": Security.STARTTLS,
        "inbound_host": None,
        "inbound_port": None,
        "login": None,
        "mechanism": AuthMechanism.USER_PASSWORD,
        "from_address": None,
        "is_active": True,
        "ehlo_name": None,
        "ca_bundle": None,
        "connect_timeout": 30.0,
        "command_timeout": 60.0,
        "max_connections": 4,
        "pool_idle_timeout": 60.0,
        **dict.fromkeys(LIMIT_FIELDS),
    }


def _preset_values(data: ProfileInput) -> dict[str, Any]:
    if not data.preset:
        return {}
    return find_preset(data.preset).profile_values()


def _given(data: ProfileInput, *, updating: bool) -> dict[str, Any]:
    """Return the plain fields the caller sent, with null kept where it clears."""
    given: dict[str, Any] = {}
    for name in _PLAIN_FIELDS:
        if name not in data.model_fields_set:
            continue
        value = getattr(data, name)
        if value is None and name not in _CLEARABLE_FIELDS:
            if updating:
                raise InvalidInputError(
                    "cannot be null; leave the field out to keep the current value",
                    field=name,
                )
            continue
        given[name] = value
    return given


def list_profiles(session: Session, clients: list[str] | None = None) -> list[Profile]:
    """List profiles by name; ``clients`` limits the result to those clients."""
    query = select(Profile).order_by(Profile.name)
    if clients is not None:
        query = query.where(Profile.client.in_(clients))
    return list(session.scalars(query))


def find_profile(session: Session, name: str) -> Profile | None:
    return session.scalars(select(Profile).where(Profile.name == name)).one_or_none()


def get_profile(session: Session, name: str) -> Profile:
    profile = find_profile(session, name)
    if profile is None:
        raise NotFoundError(f"no email profile named {name!r}", field="name")
    return profile


def _ensure_name_free(session: Session, name: str) -> None:
    if find_profile(session, name) is not None:
        raise ConflictError(
            f"an email profile named {name!r} already exists; choose another name",
            field="name",
        )


def create_profile(session: Session, box: SecretBox, data: ProfileInput) -> Profile:
    if not data.name:
        raise InvalidInputError("is required", field="name")
    state = _normalize(
        _defaults() | _preset_values(data) | _given(data, updating=False),
        is_system=False,
    )
    password = _new_password(data, state["login"])
    auth = profile_auth.prepare(data, state, None, box)
    _ensure_name_free(session, state["name"])

    profile = Profile(**state, is_system=False)
    if password is not None:
        profile.password_encrypted = box.encrypt(password)
    session.add(profile)
    session.flush()
    profile_auth.apply(session, box, profile, auth)
    release_held_messages(session, profile)
    return profile


def update_profile(
    session: Session, box: SecretBox, name: str, data: ProfileInput
) -> Profile:
    """Apply the given fields; a missing or empty password keeps the stored one.

    Null clears an optional field. Clearing the login also removes the
    stored password, which is never sent without one.
    """
    profile = get_profile(session, name)
    current = {field: getattr(profile, field) for field in _PLAIN_FIELDS}
    state = _normalize(
        current | _preset_values(data) | _given(data, updating=True),
        is_system=profile.is_system,
    )
    password = _new_password(data, state["login"])
    if password is not None and data.clear_password:
        raise InvalidInputError(
            "cannot be combined with a new password", field="clear_password"
        )
    auth = profile_auth.prepare(data, state, profile, box)

    new_name = state["name"]
    if new_name != profile.name:
        if profile.is_system:
            raise ConflictError(
                f"{profile.name} is a system profile and cannot be renamed",
                field="name",
            )
        _ensure_name_free(session, new_name)
        # Messages, jobs and templates refer to profiles by name: move the
        # undelivered messages, the jobs and the templates along.
        for model in (Job, Template):
            session.execute(
                update(model)
                .where(model.profile_name == profile.name)
                .values(profile_name=new_name)
            )
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.profile_name == profile.name,
                OutboxMessage.status.in_(list(PENDING_STATUSES)),
            )
            .values(profile_name=new_name)
        )

    for field, value in state.items():
        setattr(profile, field, value)
    if password is not None:
        profile.password_encrypted = box.encrypt(password)
    elif data.clear_password or state["login"] is None:
        profile.password_encrypted = None
    profile_auth.apply(session, box, profile, auth)
    session.flush()
    release_held_messages(session, profile)
    return profile


def delete_profile(session: Session, name: str) -> None:
    profile = get_profile(session, name)
    if profile.is_system:
        raise ConflictError(
            f"{profile.name} is a system profile and cannot be deleted; "
            "set it inactive instead",
            field="name",
        )
    pending = session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.profile_name == profile.name,
            OutboxMessage.status.in_(list(PENDING_STATUSES)),
        )
        .limit(1)
    )
    if pending is not None:
        raise ConflictError(
            f"profile {profile.name!r} still has undelivered messages; let them "
            "finish, cancel them, or set the profile inactive instead",
            field="name",
        )
    for kind, users in (
        ("scheduled jobs", _names_using(session, Job, profile.name)),
        ("templates", _names_using(session, Template, profile.name)),
    ):
        if users:
            raise ConflictError(
                f"profile {profile.name!r} is used by the {kind} "
                f"{', '.join(repr(user) for user in users)}; give them another "
                "profile first",
                field="name",
            )
    session.delete(profile)


def _names_using(
    session: Session, model: type[Job] | type[Template], profile: str
) -> list[str]:
    query = select(model.name).where(model.profile_name == profile).order_by(model.name)
    return list(session.scalars(query))


def release_profile(session: Session, name: str) -> int:
    """Queue the profile's held messages again, for example after a fix made
    at the provider; return how many were released."""
    profile = get_profile(session, name)
    reason = hold_reason(profile, profile.name)
    if reason is not None:
        raise ConflictError(
            f"its messages stay held because {reason}; fix that first", field="name"
        )
    return release_held_messages(session, profile)


def release_held_messages(session: Session, profile: Profile) -> int:
    """Queue the messages held for this profile once it can send."""
    if not profile.is_active or not profile.host:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.profile_name == profile.name,
            OutboxMessage.status == MessageStatus.HELD,
        )
        .values(status=MessageStatus.QUEUED, held_reason=None, next_attempt_at=utcnow())
    )
    released = int(getattr(result, "rowcount", 0) or 0)
    if released:
        notify_in_transaction(session)
    return released


def hold_reason(profile: Profile | None, name: str) -> str | None:
    """Say why messages for this profile cannot be sent now, or None if they can."""
    if profile is None:
        return f"email profile {name!r} does not exist"
    if not profile.is_active:
        return f"email profile {name!r} is inactive"
    if not profile.host:
        return f"email profile {name!r} has no outbound server"
    return None
