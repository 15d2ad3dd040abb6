"""The operator's console: a live page on the admin listener (``/console``).

Where to start reading:

- ``_recorder.py``  each worker's own view, from the proxy's request events:
                    requests per second by outcome and class, latency, the
                    top talkers by address, network, agent and path.
- ``_console.py``   worker 0's routes and its once-a-second sampler (status,
                    verdict, bans, /metrics), adding every worker up.
- ``_timeline.py``  mode changes, verdicts, bans and operators' actions, with export.
- ``_auth.py``      login with the admin token, the session cookie, CSRF and
                    same-origin checks.
- ``static/``       the page (no build step) and the vendored uPlot charts
                    (``static/vendor/uplot``, MIT, see its SOURCE.txt).

The proxy's admin listener (shieldwall.proxy.admin) serves it; docs/CONSOLE.md
is the operator's guide.
"""

from shieldwall.console._auth import ConsoleAuth, cross_site
from shieldwall.console._console import Console, metric_totals, origin_of
from shieldwall.console._recorder import Recorder, outcome_of
from shieldwall.console._timeline import Timeline

__all__ = ["Console", "ConsoleAuth", "Recorder", "Timeline", "cross_site", "metric_totals",
           "origin_of", "outcome_of"]
