"""The ``hvps`` command: a dispatcher (:mod:`~hvps_lightning.cli.main`) and one module per command.

Every module here sits on top of the domain packages and calls them; nothing below imports
from ``cli``.
"""

from hvps_lightning.cli.main import entry_point, main

__all__ = ["entry_point", "main"]
