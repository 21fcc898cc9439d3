"""What loading a state dict into a network did: the keys it left fresh and the keys it did not use.

Every start-weights path (``pretrained``, ``init_checkpoint``, ``init_from``) reports a
:class:`LoadResult`; :func:`fresh_modules` summarises its fresh keys as the modules that
start from their initial values (``temporal_attention``, ``roi_heads.embedding_head``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn


@dataclass
class LoadResult:
    """What one state dict did to a network.

    Attributes:
        fresh: the network's keys left (entirely or partly) at their initial values.
        unused: the source's keys that nothing took (absent here, another shape, or dropped
            by a converter), with the reason after a colon where a converter gives one.
    """

    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def fresh_modules(net: nn.Module, fresh_keys: Iterable[str]) -> list[str]:
    """The outermost modules of ``net`` all of whose tensors are in ``fresh_keys``, then loose keys.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> fresh_modules(net, ["1.weight", "1.bias", "0.bias"])
        ['1', '0.bias']
    """
    fresh = set(fresh_keys)
    state_keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    covered: set[str] = set()
    names: list[str] = []
    for name, _ in net.named_modules():
        if not name or any(name.startswith(done + ".") for done in names):
            continue
        own = [k for k in state_keys if k.startswith(name + ".")]
        if own and all(k in fresh for k in own):
            names.append(name)
            covered.update(own)
    return names + sorted(fresh - covered)
