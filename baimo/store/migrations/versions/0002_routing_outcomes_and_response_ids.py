"""routing outcomes and response ids

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outcomes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('router', sa.String(length=200), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('response_id', sa.String(length=40), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.create_index('ix_outcomes_router', ['router', 'id'], unique=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_id', sa.String(length=40), nullable=True))

    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('prompt', sa.Text(), nullable=True))
        batch_op.create_index('ix_usage_response', ['response_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_response')
        batch_op.drop_column('prompt')
        batch_op.drop_column('response_id')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('response_id')

    with op.batch_alter_table('outcomes', schema=None) as batch_op:
        batch_op.drop_index('ix_outcomes_router')

    op.drop_table('outcomes')
