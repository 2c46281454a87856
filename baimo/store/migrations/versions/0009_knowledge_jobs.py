"""knowledge_jobs: ingestion jobs in the database, so they survive a restart and run on any replica

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'knowledge_jobs',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('knowledge_base', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('files', sa.Text(), nullable=False),
        sa.Column('files_total', sa.Integer(), nullable=False),
        sa.Column('files_done', sa.Integer(), nullable=False),
        sa.Column('chunks_done', sa.Integer(), nullable=False),
        sa.Column('current', sa.String(length=1000), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('report', sa.Text(), nullable=False),
        sa.Column('claimed_by', sa.String(length=200), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('heartbeat', sa.Float(), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_knowledge_jobs_status', 'knowledge_jobs', ['status'])


def downgrade() -> None:
    op.drop_index('ix_knowledge_jobs_status', table_name='knowledge_jobs')
    op.drop_table('knowledge_jobs')
