"""A cheaper constructor for the frozen, slotted dataclasses built per request.

A frozen dataclass cannot say ``self.x = x``, so its generated ``__init__``
stores every field with ``object.__setattr__``: a generic attribute lookup and
a bound-method call per field. Measured with callgrind on this machine's
Python 3.11, a ``RequestFacts`` (9 fields) cost ~15,000 instructions and a
``RequestEvent`` (17 fields) ~36,000 -- more than the guard's whole decision,
and paid for every request.

:func:`fast_init` replaces that ``__init__`` with one of the same signature
and defaults that stores through each slot's own descriptor (what a plain
``self.x = x`` does for a slotted class): 2-4x cheaper (timeit here:
RequestFacts 1.7 -> 0.8 µs, RequestEvent 4.2 -> 1.8 µs). Nothing else
changes: the class stays frozen (assignment still raises), equal, hashable
and printed as before. Only for classes with plain defaults (no
``default_factory``, no ``__post_init__``, no keyword-only fields): anything
else is refused at import time rather than silently built wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, placed above ``@dataclass(frozen=True, slots=True)``."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    dc_params = vars(cls).get("__dataclass_params__")
    if dc_params is None or not dc_params.frozen or "__slots__" not in vars(cls) \
            or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen, slotted dataclass "
                        "without __post_init__")
    ns: dict[str, Any] = {}
    sig: list[str] = []
    body: list[str] = []
    for f in params:
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"fast_init: {cls.__name__}.{f.name} needs the generated __init__")
        # Each slot is a member descriptor on the class; its __set__ ignores
        # the frozen __setattr__, exactly as object.__setattr__ does.
        ns[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            sig.append(f.name)
        else:
            ns[f"_default_{f.name}"] = f.default
            sig.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    # Generated source, as dataclasses itself does: a loop over the fields
    # would cost most of what this saves.
    src = f"def __init__(self, {', '.join(sig)}):\n" + ("\n".join(body) or "    pass")
    exec(src, ns)  # built from the class's own field names only
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc,method-assign]
    return cls
