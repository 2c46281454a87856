"""knowledge bases, their documents, personas, the persona of each usage record, message citations

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'knowledge_bases',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('embedder', sa.String(length=200), nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('chunk_overlap', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'knowledge_documents',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kb_id', sa.String(length=32), nullable=False),
        sa.Column('doc_id', sa.String(length=40), nullable=False),
        sa.Column('source', sa.String(length=1000), nullable=False),
        sa.Column('format', sa.String(length=16), nullable=False),
        sa.Column('title', sa.String(length=500), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.Integer(), nullable=False),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['kb_id'], ['knowledge_bases.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_knowledge_documents_kb_doc', 'knowledge_documents', ['kb_id', 'doc_id'], unique=True)
    op.create_table(
        'personas',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('instructions', sa.Text(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=True),
        sa.Column('temperature', sa.Float(), nullable=True),
        sa.Column('knowledge', sa.Text(), nullable=False),
        sa.Column('grounded', sa.Boolean(), nullable=False),
        sa.Column('min_relevance', sa.Float(), nullable=True),
        sa.Column('top_k', sa.Integer(), nullable=True),
        sa.Column('budget_usd', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('citations', sa.Text(), nullable=True))
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('persona', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_usage_persona', ['persona', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_persona')
        batch_op.drop_column('persona')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('citations')
    op.drop_table('personas')
    op.drop_index('ix_knowledge_documents_kb_doc', table_name='knowledge_documents')
    op.drop_table('knowledge_documents')
    op.drop_table('knowledge_bases')
