"""Ray, for every test here: set before anything imports Ray, which reads some of it at import.

For every Ray process of the tests (the head, the test process as driver, the servers, which
inherit the environment): a one-node cluster on loopback only (Ray otherwise binds to and dials
the machine's own network address), no auth token (a token left in ~/.ray by an earlier local
`ray.init()` must not matter), no usage reporting, no model hub.
"""

from __future__ import annotations

import os

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "HF_HUB_OFFLINE": "1"}
os.environ.update(RAY_ENV)
