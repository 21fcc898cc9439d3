"""The ``hvps`` command.

``hvps fit|validate|test|predict`` is a LightningCLI (subclass mode for model and data);
every other command is a jsonargparse parser in the module that owns it, imported only
when that command runs so that ``hvps --help`` and the light commands start fast.

A command module provides ``build_parser() -> jsonargparse.ArgumentParser`` and
``run(cfg: jsonargparse.Namespace) -> int | None``. Errors a user can cause are
:class:`~hvps_lightning.errors.HVPSError`: printed as one line on stderr, exit code 2, no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from hvps_lightning.errors import HVPSError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("hvps_lightning.cli.synth", "write a synthetic dataset in an official layout"),
    "data": ("hvps_lightning.cli.data", "check a dataset root, or write a resized copy of it (check|cache)"),
    "evaluate": ("hvps_lightning.cli.evaluate", "STQ / MOTS metrics from folders of results"),
    "track": ("hvps_lightning.cli.track", "track a detection cache; write MOTS txt / STEP PNGs"),
    "sweep": ("hvps_lightning.cli.sweep", "tracker hyperparameter sweeps on a detection cache"),
    "ablate": ("hvps_lightning.cli.ablate", "run the TA/SA ablation grid"),
    "bundle": ("hvps_lightning.cli.bundle", "write two trained checkpoints as one model file (model.hvps)"),
    "infer": ("hvps_lightning.cli.infer", "run a model on a video, a folder of frames or a glob"),
    "export": ("hvps_lightning.cli.export", "export a model's networks to ONNX or TorchScript, checked"),
    "demo": ("hvps_lightning.cli.demo", "the end-to-end demo on generated data"),
}


def _usage() -> str:
    lines = ["usage: hvps COMMAND [ARGS] [--debug]", "", "commands:"]
    for name in LIGHTNING_COMMANDS:
        lines.append(f"  {name:<10} LightningCLI {name} (--config A.yaml [--config B.yaml])")
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines += ["", "`hvps COMMAND --help` describes each command; --debug shows tracebacks."]
    return "\n".join(lines)


def find_user_error(exc: BaseException | None) -> HVPSError | None:
    """Return the first user error in ``exc``'s cause/context chain, if any.

    That is an :class:`HVPSError`, or Lightning's ``MisconfigurationException`` (a trainer
    setting that contradicts another, e.g. a callback that needs a logger), returned as an
    :class:`HVPSError` with Lightning's message.
    """
    # Only a command that imported Lightning can raise its exception: never import it here.
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    misconfiguration = getattr(lightning_errors, "MisconfigurationException", None)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, HVPSError):
            return exc
        if misconfiguration is not None and isinstance(exc, misconfiguration):
            return HVPSError(f"Lightning refused the configuration: {exc}")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def run_lightning(args: Sequence[str]) -> int:
    """Run the LightningCLI with ``args`` (starting with fit/validate/test/predict)."""
    from hvps_lightning.lightning.cli import run_lightning_cli

    run_lightning_cli(list(args))
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``hvps``; returns the exit code (tests call it directly)."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv or os.environ.get("HVPS_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command = argv[0]
    try:
        if command in LIGHTNING_COMMANDS:
            return run_lightning(argv)
        if command not in COMMANDS:
            raise HVPSError(f"unknown command {command!r}; run `hvps --help` for the list")
        module = importlib.import_module(COMMANDS[command][0])
        parser = module.build_parser()
        parser.prog = f"hvps {command}"
        cfg = parser.parse_args(argv[1:])
        code = module.run(cfg)
        return int(code or 0)
    except Exception as exc:
        # LightningCLI / jsonargparse wrap errors raised while instantiating classes from a
        # config; the user-facing HVPSError is then somewhere in the cause chain.
        user_error = find_user_error(exc)
        if debug or user_error is None:
            raise
        print(f"hvps {command}: error: {user_error}", file=sys.stderr)
        return user_error.exit_code
    except KeyboardInterrupt:
        print(f"hvps {command}: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
