"""The proxy: the shield's data path (docs/PROXY.md).

Start reading at ``server`` (one client connection), then ``upstream``
(backend connections, the pool), ``balancer`` and ``cache`` (pure),
``worker`` (one event loop: accept, sweeper, health checks), ``supervisor``
(``shieldwall serve``), ``admin``, ``wiring`` (where guard and detect plug in).

To run a shield inside a test process::

    from shieldwall.proxy import run_shield
    async with run_shield(config) as shield:
        ... shield.port, shield.admin_port, shield.url ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shieldwall.proxy.worker import Shield, run_shield

__all__ = ["Shield", "run_shield"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the CLI does not load the whole data path.
    if name in __all__:
        from shieldwall.proxy import worker

        return getattr(worker, name)
    raise AttributeError(name)
