"""stored images: OpenAI-route results fetched by URL for 60 minutes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stored_images',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stored_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stored_images_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stored_images_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stored_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stored_images_expires_at'))
        batch_op.drop_index(batch_op.f('ix_stored_images_account_id'))

    op.drop_table('stored_images')
