"""Constructors for frozen slotted dataclasses that set each field once, without a call per
field: the ACMS core's records and actions (core/state.py, core/events.py) and the flows it
builds from checked values (``acm.model.trusted``).

A frozen dataclass's ``__init__`` cannot assign its fields: it sets each through
``object.__setattr__``, a call per field (the dataclasses documentation's "tiny performance
penalty" of ``frozen=True``), which was most of what making a record, a send or a store change
cost.  :func:`builder` makes, once per class, a constructor that assigns the fields to a
*draft*: a mutable class with the frozen class's bases and slots (so the same memory layout),
and then gives the draft the frozen class (``__class__`` assignment, which Python allows
between classes of the same layout).  What it returns is an instance of the frozen class, equal
to what the class's own constructor makes from the same values and as frozen
(tests/core/test_frozen_builders.py).

Only for classes whose ``__init__`` does nothing but set its fields (no ``init=False`` field,
no default factory) and, unless the caller skips it on purpose (``model.trusted``: values
checked already), no ``__post_init__``: :func:`builder` refuses any other.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any


def draft_of(cls: type) -> type:
    """A mutable class of ``cls``'s layout (its bases and slots): fill one, then assign
    ``cls`` to its ``__class__``."""
    return type(f"_{cls.__name__}Draft", cls.__bases__, {"__slots__": vars(cls)["__slots__"]})


def builder(cls: type, skip_post_init: bool = False) -> Any:
    """``cls(...)`` for a frozen slotted dataclass without ``__post_init__`` (or, with
    ``skip_post_init``, without running it): the same parameters and defaults (all
    positional or keyword), each field assigned once."""
    params = getattr(cls, "__dataclass_params__", None)
    if not is_dataclass(cls) or params is None or not params.frozen \
            or "__slots__" not in vars(cls) \
            or (hasattr(cls, "__post_init__") and not skip_post_init):
        raise TypeError(f"{cls.__name__} is not a frozen slotted dataclass without "
                        "__post_init__")
    own = list(fields(cls))
    if any(not f.init or f.default_factory is not MISSING for f in own):
        raise TypeError(f"{cls.__name__} has a field its constructor does not simply set")
    draft = draft_of(cls)
    names = [f.name for f in own]
    defaults = {f"_d_{f.name}": f.default for f in own if f.default is not MISSING}
    signature = ", ".join(f"{n}=_d_{n}" if f"_d_{n}" in defaults else n for n in names)
    body = "".join(f"    obj.{n} = {n}\n" for n in names)
    namespace: dict[str, Any] = {"_new": object.__new__, "_draft": draft, "_cls": cls,
                                 **defaults}
    exec(f"def build({signature}):\n    obj = _new(_draft)\n{body}"
         f"    obj.__class__ = _cls\n    return obj\n", namespace)
    build = namespace["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
