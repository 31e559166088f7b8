"""request outcomes: image_requests.outcome (in words) replaces image_requests.http_status

The usage table records how a request ended as the domain sees it (pixeldrop.accounts.outcomes),
never an HTTP status. Existing rows are translated from the status they were recorded with; a
refunded 499 whose job was canceled becomes `canceled`. The values are written out here, not
imported, so that this migration keeps meaning what it meant when later code changes.

The old column is dropped in place (`recreate="never"`: SQLite's own ALTER TABLE ... DROP COLUMN,
SQLite 3.35 or newer). A batch copy of the table would have to drop `image_requests`, which the
ledger and jobs reference, and SQLite refuses that with foreign keys on, as pixeldrop runs it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 17:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The statuses recorded until now, and the outcome each meant.
OUTCOME_OF_STATUS = {
    200: 'charged',
    400: 'invalid_request',
    401: 'bad_key',
    402: 'out_of_credits',
    403: 'bad_key',
    406: 'not_acceptable',
    408: 'body_timeout',
    409: 'idempotency_conflict',
    413: 'body_too_large',
    422: 'idempotency_conflict',
    429: 'rate_limited',
    431: 'invalid_request',
    499: 'abandoned',
    500: 'failed',
    503: 'busy',
}
# And back, for a downgrade (`refused`: a refusal of no listed kind).
STATUS_OF_OUTCOME = {
    'charged': 200, 'invalid_request': 400, 'bad_key': 403, 'out_of_credits': 402, 'not_acceptable': 406,
    'body_timeout': 408, 'idempotency_conflict': 422, 'body_too_large': 413, 'rate_limited': 429,
    'abandoned': 499, 'canceled': 499, 'failed': 500, 'busy': 503, 'refused': 400,
}

requests = sa.table('image_requests', sa.column('id', sa.Integer()), sa.column('state', sa.String()),
                    sa.column('http_status', sa.Integer()), sa.column('outcome', sa.String()))
jobs = sa.table('jobs', sa.column('request_id', sa.Integer()), sa.column('status', sa.String()))


def upgrade() -> None:
    with op.batch_alter_table('image_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=32), nullable=True))
    status = requests.c.http_status
    op.execute(requests.update().where(status.is_not(None)).values(outcome=sa.case(
        *((status == code, outcome) for code, outcome in OUTCOME_OF_STATUS.items()),
        (status >= 500, 'failed'),
        else_='refused',
    )))
    op.execute(requests.update().where(requests.c.state == 'charged').values(outcome='charged'))
    canceled = sa.select(jobs.c.request_id).where(jobs.c.status == 'canceled')
    op.execute(requests.update().where(requests.c.state == 'refunded', requests.c.id.in_(canceled))
               .values(outcome='canceled'))
    with op.batch_alter_table('image_requests', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('http_status')


def downgrade() -> None:
    with op.batch_alter_table('image_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('http_status', sa.Integer(), nullable=True))
    outcome = requests.c.outcome
    op.execute(requests.update().where(outcome.is_not(None)).values(http_status=sa.case(
        *((outcome == name, code) for name, code in STATUS_OF_OUTCOME.items()),
        else_=500,
    )))
    with op.batch_alter_table('image_requests', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('outcome')
