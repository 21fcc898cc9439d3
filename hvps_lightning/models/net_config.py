"""Networks that remember how they were built, so a task can save them as configuration.

A task receives its network built (``MOTSModule(net=MOTSNet(...))``, the LightningCLI builds
it from the YAML); its checkpoint must still say how to build that network again, or
``load_from_checkpoint`` and ``hvps predict --ckpt_path`` could not rebuild it. Each network
records its constructor arguments with :func:`constructor_arguments`; :func:`net_config`
turns them into the ``{"class_path", "init_args"}`` form the LightningCLI reads.

Example:
    >>> from torch import nn
    >>> class Tiny(nn.Module):
    ...     def __init__(self, width: int = 4, depth: int = 2) -> None:
    ...         super().__init__()
    ...         self.init_args = constructor_arguments()
    >>> net_config(Tiny(width=8))["init_args"]
    {'width': 8, 'depth': 2}
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn


def constructor_arguments() -> dict[str, Any]:
    """The arguments of the ``__init__`` that calls this, by name (call it before changing any).

    Raises:
        TypeError: if the caller takes ``*args`` or ``**kwargs`` (they have no names to save).
    """
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    if caller is None:  # pragma: no cover - CPython always has frames
        raise RuntimeError("constructor_arguments needs the caller's frame")
    code = caller.f_code
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        raise TypeError(f"{code.co_name}: *args/**kwargs cannot be recorded as configuration")
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    return {name: caller.f_locals[name] for name in names[1:]}  # names[0] is self


def net_config(net: nn.Module) -> dict[str, Any] | None:
    """``{"class_path": ..., "init_args": ...}`` of a network that recorded its arguments, else None."""
    init_args = getattr(net, "init_args", None)
    if not isinstance(init_args, dict):
        return None
    cls = type(net)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(init_args)}
