"""``python -m hvps_lightning.cli``: the ``hvps`` command."""

from hvps_lightning.cli.main import entry_point

entry_point()
