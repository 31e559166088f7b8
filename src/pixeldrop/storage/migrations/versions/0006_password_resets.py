"""password resets: single-use tokens mailed to the account's address

Also what the account pages' self-service needs: `accounts.deleted_at` (an account closed by its
owner keeps its row, ledger and usage), `image_requests.prompt` (shown to the owner only; NULL
when the operator turned prompt storage off), `browser_sessions.flash` (a message for the next
page, encrypted under the browser's own token) and `playground_images` (the playground's history).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('password_resets',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_resets_account_id'), ['account_id'], unique=False)

    op.create_table('playground_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('playground_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_playground_images_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('image_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompt', sa.Text(), nullable=True))
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flash', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.drop_column('flash')
    with op.batch_alter_table('image_requests', schema=None) as batch_op:
        batch_op.drop_column('prompt')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')

    with op.batch_alter_table('playground_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_playground_images_account_id'))
    op.drop_table('playground_images')

    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_resets_account_id'))
    op.drop_table('password_resets')
