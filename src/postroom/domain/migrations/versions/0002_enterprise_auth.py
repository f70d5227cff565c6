"""OAuth grants and flows; Kerberos, OAuth and client certificate profile fields.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_flows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("code_verifier_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("authorization_url", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("state_hash"),
    )
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_flows_profile_id"), ["profile_id"], unique=False
        )

    op.create_table(
        "oauth_grants",
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("refresh_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("access_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("access_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("connected_at", sa.DateTime(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(), nullable=True),
        sa.Column("failed_at", sa.DateTime(), nullable=True),
        sa.Column("failure_error", sa.String(length=200), nullable=True),
        sa.Column("failure_description", sa.Text(), nullable=True),
        sa.Column("failure_status", sa.Integer(), nullable=True),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("profile_id"),
    )
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kerberos_service_principal", sa.String(length=500), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("kerberos_keytab", sa.String(length=1000), nullable=True)
        )
        batch_op.add_column(
            sa.Column("kerberos_config", sa.String(length=1000), nullable=True)
        )
        batch_op.add_column(
            sa.Column("oauth_provider", sa.String(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("oauth_client_id_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("oauth_client_secret_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("oauth_token_endpoint_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "oauth_authorization_endpoint", sa.String(length=1000), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("oauth_scope_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("client_certificate_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("client_key_encrypted", sa.LargeBinary(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_column("client_key_encrypted")
        batch_op.drop_column("client_certificate_encrypted")
        batch_op.drop_column("oauth_scope_encrypted")
        batch_op.drop_column("oauth_authorization_endpoint")
        batch_op.drop_column("oauth_token_endpoint_encrypted")
        batch_op.drop_column("oauth_client_secret_encrypted")
        batch_op.drop_column("oauth_client_id_encrypted")
        batch_op.drop_column("oauth_provider")
        batch_op.drop_column("kerberos_config")
        batch_op.drop_column("kerberos_keytab")
        batch_op.drop_column("kerberos_service_principal")

    op.drop_table("oauth_grants")
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_flows_profile_id"))

    op.drop_table("oauth_flows")
