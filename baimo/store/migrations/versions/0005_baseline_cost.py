"""usage and messages: what the answer would have cost on the strongest model the router could have used

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('usage', 'messages'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('baseline_cost', sa.Float(), nullable=True))
            batch_op.add_column(sa.Column('baseline_model', sa.String(200), nullable=True))


def downgrade() -> None:
    for table in ('usage', 'messages'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('baseline_model')
            batch_op.drop_column('baseline_cost')
