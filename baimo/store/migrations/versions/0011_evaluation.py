"""evaluation: eval_runs, eval_results (one scored item per target, written as it finishes) and eval_cache (paid
answers by sha256 of target, messages and parameters)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'eval_runs',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('owner', sa.String(length=240), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('suite', sa.Text(), nullable=False),
        sa.Column('params', sa.Text(), nullable=False),
        sa.Column('targets', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_eval_runs_created', 'eval_runs', ['created_at'], unique=False)
    op.create_table(
        'eval_results',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=32), nullable=False),
        sa.Column('target', sa.String(length=240), nullable=False),
        sa.Column('item_id', sa.String(length=200), nullable=False),
        sa.Column('correct', sa.Boolean(), nullable=True),
        sa.Column('score', sa.Float(), nullable=True),
        sa.Column('extracted', sa.Text(), nullable=True),
        sa.Column('expected', sa.Text(), nullable=True),
        sa.Column('answer', sa.Text(), nullable=True),
        sa.Column('served_model', sa.String(length=200), nullable=True),
        sa.Column('cost', sa.Float(), nullable=False),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('prompt_tokens', sa.Integer(), nullable=False),
        sa.Column('completion_tokens', sa.Integer(), nullable=False),
        sa.Column('cached', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['eval_runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ux_eval_results_item', 'eval_results', ['run_id', 'target', 'item_id'], unique=True)
    op.create_table(
        'eval_cache',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=240), nullable=True),
        sa.Column('target', sa.String(length=240), nullable=False),
        sa.Column('response', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('eval_cache')
    op.drop_index('ux_eval_results_item', table_name='eval_results')
    op.drop_table('eval_results')
    op.drop_index('ix_eval_runs_created', table_name='eval_runs')
    op.drop_table('eval_runs')
