"""Budgets and rate limits: a limits row per subject (key:<id> or team:<id>: budget in USD per day or month, RPM,
TPM); budget_windows, what each subject spent and holds reserved per budget period (nano-USD integers, updated by
atomic conditional UPDATEs so that concurrent requests and replicas cannot overspend); budget_reservations, each
request's hold until it settles (reclaimed when older than a request can live). See baimo/metering/budgets.py.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'limits',
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('budget_usd', sa.Float(), nullable=True),
        sa.Column('budget_period', sa.String(length=8), nullable=False, server_default='month'),
        sa.Column('rpm', sa.Integer(), nullable=True),
        sa.Column('tpm', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('subject'),
    )
    op.create_table(
        'budget_windows',
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('period_start', sa.String(length=10), nullable=False),
        sa.Column('spent', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('reserved', sa.BigInteger(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('subject', 'period_start'),
    )
    op.create_table(
        'budget_reservations',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('period_start', sa.String(length=10), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_budget_reservations_created', 'budget_reservations', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_budget_reservations_created', table_name='budget_reservations')
    op.drop_table('budget_reservations')
    op.drop_table('budget_windows')
    op.drop_table('limits')
