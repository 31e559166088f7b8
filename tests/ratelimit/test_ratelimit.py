from __future__ import annotations

import pytest

from pixeldrop.errors import RateLimited
from pixeldrop.ratelimit import RateLimiter


@pytest.fixture(params=["memory", "redis"])
def limiter(request):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    limiter = RateLimiter(url)
    limiter.reset()
    yield limiter
    limiter.reset()


def test_limit_per_key_with_quota_and_retry_after(limiter):
    quotas = [limiter.hit(1, 3) for _ in range(3)]
    assert [q.remaining for q in quotas] == [2, 1, 0]
    with pytest.raises(RateLimited) as refused:
        limiter.hit(1, 3)
    assert 1 <= refused.value.retry_after <= 60
    assert refused.value.limit == 3
    assert limiter.hit(2, 3).remaining == 2, "each key has its own window"


def test_a_raised_limit_applies_at_once(limiter):
    for _ in range(2):
        limiter.hit(7, 2)
    with pytest.raises(RateLimited):
        limiter.hit(7, 2)
    assert limiter.hit(7, 10).remaining >= 0


def test_redis_counts_are_shared_between_limiters(redis_url):
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    first.reset()
    first.hit("shared", 2)
    second.hit("shared", 2)
    with pytest.raises(RateLimited):
        first.hit("shared", 2)
    first.reset()
