"""shieldwall: keep a shop selling through a flood, a flash crowd or a dead server.

Where to start reading (the map is docs/ARCHITECTURE.md):

- ``cli``        the one entry point; every command is a thin client of a part below.
- ``config``     TOML -> validated settings; every error names its key path and the fix.
- ``http``       framing rules and limits over llhttp (httptools); sans-IO.
- ``proxy``      the IO shell: listener, upstream pool, health, stale cache, admin.
- ``guard``      the decision engine: identity, buckets, classes, challenge, modes.
- ``detect``     streaming features and the verdict: normal / flash_crowd / ddos /
                 backend_failure; live in the proxy and offline over logs.
- ``monitor``    outside probes, quorum, incidents, escalating alerts, status page.
- ``drill``      the lab: demo shop, shoppers, attackers, faults, scenarios, report.

The contracts between parts live in ``guard.decision`` (what the proxy asks the
guard and what it must enforce) and ``detect.events`` (what the proxy tells the
detector about every request, and what a log line becomes).
"""

__version__ = "0.1.0"

from shieldwall import _build

_build.install()  # compiled or pure hot path: decided before any of it is imported
