"""Tenancy: a teams table; api_keys get user, team_id, is_admin and models; conversations, knowledge bases,
personas, outcomes and usage get an owner (usage also team_id); knowledge base and persona names become unique per
owner instead of globally.

NULL owner = the local single user (rows made while auth is off, and every row from before this revision).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# SQLite's reflected UNIQUE(name) has no name: batch mode names it by this convention so it can be dropped.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _drop_unique_name(table: str) -> None:
    """Drop the table-wide UNIQUE(name) made by 0003 (PostgreSQL names it <table>_name_key)."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(table, schema=None, naming_convention=_NAMING, recreate="always") as batch_op:
            batch_op.drop_constraint(f"uq_{table}_name", type_="unique")
    else:
        op.drop_constraint(f"{table}_name_key", table, type_="unique")


def upgrade() -> None:
    op.create_table(
        'teams',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name', name='uq_teams_name'),
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('team_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('models', sa.Text(), nullable=True))
        batch_op.create_foreign_key('fk_api_keys_team_id', 'teams', ['team_id'], ['id'])
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=240), nullable=True))
        batch_op.create_index('ix_conversations_owner_updated', ['owner', 'updated_at'], unique=False)
    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=240), nullable=True))
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=240), nullable=True))
        batch_op.add_column(sa.Column('team_id', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_usage_owner', ['owner', 'created_at'], unique=False)
        batch_op.create_index('ix_usage_team', ['team_id', 'created_at'], unique=False)

    # knowledge_documents cascade-delete with their base, and SQLite's batch mode drops and re-creates the table
    # (PRAGMA foreign_keys cannot be turned off inside the migration's transaction): keep its rows aside meanwhile.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMP TABLE _kd_0007 AS SELECT * FROM knowledge_documents")
    for table in ('knowledge_bases', 'personas'):
        op.add_column(table, sa.Column('owner', sa.String(length=240), nullable=True))
        _drop_unique_name(table)
        op.create_index(f'ux_{table}_owner_name', table, [sa.text("coalesce(owner, '')"), 'name'], unique=True)
    if sqlite:
        op.execute("DELETE FROM knowledge_documents")
        op.execute("INSERT INTO knowledge_documents SELECT * FROM _kd_0007")
        op.execute("DROP TABLE _kd_0007")


def downgrade() -> None:
    for table in ('personas', 'knowledge_bases'):
        op.drop_index(f'ux_{table}_owner_name', table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('owner')
            batch_op.create_unique_constraint(f'uq_{table}_name', ['name'])
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_team')
        batch_op.drop_index('ix_usage_owner')
        batch_op.drop_column('team_id')
        batch_op.drop_column('owner')
    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.drop_column('owner')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_owner_updated')
        batch_op.drop_column('owner')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint('fk_api_keys_team_id', type_='foreignkey')
        batch_op.drop_column('models')
        batch_op.drop_column('is_admin')
        batch_op.drop_column('team_id')
        batch_op.drop_column('user')
    op.drop_table('teams')
