"""The ``hvps`` command.

``hvps fit|validate|test|predict`` is a LightningCLI (subclass mode for model and data);
every other command is a jsonargparse parser in the module that owns it, imported only
when that command runs so that ``hvps --help`` and the light commands start fast.

A command module provides ``build_parser() -> jsonargparse.ArgumentParser`` and
``run(cfg: jsonargparse.Namespace) -> int | None``, or, when it takes the arguments of ``hvps
fit`` (``hvps plan``), ``run_args(args: list[str]) -> int`` that parses them itself. Errors a
user can cause are
:class:`~hvps_lightning.errors.HVPSError`: printed as one line on stderr, exit code 2, no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

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
    "config": ("hvps_lightning.cli.config", "list or show the shipped YAML configs"),
    "plan": ("hvps_lightning.cli.plan", "a training config's resolved schedule as JSON (no training)"),
    "submit": ("hvps_lightning.cli.submit", "pack predictions in a benchmark server's layout (step|mots)"),
}


def version() -> str:
    """The installed version of hvps-lightning (``hvps --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("hvps-lightning")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _usage() -> str:
    lines = ["usage: hvps COMMAND [ARGS] [--debug] | hvps --version", "", "commands:"]
    for name in LIGHTNING_COMMANDS:
        lines.append(f"  {name:<10} LightningCLI {name} (--config A.yaml [--config B.yaml])")
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines += ["", "`hvps COMMAND --help` describes each command; --debug shows tracebacks."]
    return "\n".join(lines)


def find_user_error(exc: BaseException | None, argv: Sequence[str] = ()) -> HVPSError | None:
    """Return the first user error in ``exc``'s cause/context chain, if any, as one line.

    That is an :class:`HVPSError`; Lightning's ``MisconfigurationException`` (a trainer setting
    that contradicts another); an argument or config error of jsonargparse (named with the
    ``--config`` file that holds the key, see :func:`argument_error_line`); or an ``OSError``
    on a file (a read-only folder, a file where a folder is expected, a full disk), named by
    its path.
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
        if isinstance(exc, argparse.ArgumentError):
            return HVPSError(argument_error_line(str(exc), argv))
        if isinstance(exc, OSError) and exc.filename is not None:
            return HVPSError(f"{exc.filename}: {exc.strerror or exc}")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


_UNKNOWN_OPTION = re.compile(r"does not accept option '([^']+)'")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')


def argument_error_line(message: str, argv: Sequence[str] = ()) -> str:
    """One line out of a jsonargparse error: the key, what is wrong, and where it was set.

    Where: the command-line option that set the key, else the last ``--config`` file of ``argv``
    that holds it.

    jsonargparse explains a bad value of a nested class through every alternative of every
    Union it tried (dozens of lines); the line kept is the innermost complaint about the key.

    Example:
        >>> argument_error_line("Subcommand 'fit' does not accept option 'trainer.max_epochz'")
        'trainer.max_epochz: unknown key'
    """
    unknown = _UNKNOWN_OPTION.search(message)
    if unknown:
        key, problem = unknown.group(1), "unknown key"
    else:
        keys = _PARSER_KEY.findall(message)
        key = ".".join(keys)
        lines = [line.strip(" -") for line in message.splitlines()]
        useful = [
            line
            for line in lines
            if line
            and not line.startswith(("Parser key", "Does not validate", "Subtypes", "Errors", "Given value"))
            and "NoneType" not in line
            and not line.startswith("Problem with given class_path")
        ]
        problem = useful[-1] if useful else (lines[0] if lines else message)
        problem = re.sub(r"<class '([\w.]+)'>", r"\1", problem)
    if not key:
        return problem
    option = _option_with_key(key, argv)
    if option is not None:
        return f"{option}: {problem}"
    found = _config_with_key(key, config_files(argv))
    return f"--config {found[0]}: {found[1]}: {problem}" if found else f"{key}: {problem}"


def _option_with_key(key: str, argv: Sequence[str]) -> str | None:
    wanted = [p for p in key.split(".") if p != "init_args"]
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and [p for p in name[2:].split(".") if p != "init_args"] == wanted:
            return name
    return None


def _config_with_key(key: str, config_files: Sequence[str]) -> tuple[str, str] | None:
    """The last ``--config`` file that sets ``key``, and the key's full path there.

    ``init_args`` levels are optional, and a key a nested parser reports without its parents
    (``max_epochz`` for ``trainer.max_epochz``) is found at any depth.
    """
    import yaml

    parts = [p for p in key.split(".") if p != "init_args"]
    found = None
    for name in config_files:
        try:
            data = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        path = _find_key(data, parts, [])
        if path is not None:
            found = (name, ".".join(path))
    return found


def _find_key(node: object, parts: list[str], above: list[str]) -> list[str] | None:
    if _has_key(node, parts):
        return [*above, *parts]
    if isinstance(node, dict):
        for name, child in node.items():
            path = _find_key(child, parts, above if name == "init_args" else [*above, str(name)])
            if path is not None:
                return path
    return None


def _has_key(node: object, parts: list[str]) -> bool:
    if not parts:
        return True
    if not isinstance(node, dict):
        return False
    if parts[0] in node:
        return _has_key(node[parts[0]], parts[1:])
    return "init_args" in node and _has_key(node["init_args"], parts)


def config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config`` files of an (expanded) argument list."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]


def run_lightning(args: Sequence[str]) -> int:
    """Run the LightningCLI with ``args`` (starting with fit/validate/test/predict)."""
    from hvps_lightning.lightning.cli import run_lightning_cli

    # argument and config errors are raised (one line in `main`) instead of printing usage
    run_lightning_cli(list(args), parser_kwargs={"exit_on_error": False})
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``hvps``; returns the exit code (tests call it directly)."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv or os.environ.get("HVPS_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"hvps-lightning {version()}")
        return 0
    command = argv[0]
    previous_handler = _stop_on_sigterm()
    try:
        if any(a in ("--config", "-c") or a.startswith("--config=") for a in argv[1:]):
            from hvps_lightning.cli.config import expand_config_args

            argv = [command, *expand_config_args(argv[1:])]
        if command in LIGHTNING_COMMANDS:
            return run_lightning(argv)
        if command not in COMMANDS:
            raise HVPSError(f"unknown command {command!r}; run `hvps --help` for the list")
        module = importlib.import_module(COMMANDS[command][0])
        if hasattr(module, "run_args"):
            return int(module.run_args(argv[1:]) or 0)
        parser = module.build_parser()
        parser.prog = f"hvps {command}"
        parser.exit_on_error = False
        cfg = parser.parse_args(argv[1:])
        code = module.run(cfg)
        return int(code or 0)
    except BrokenPipeError:
        # the reader of our output went away (`hvps config list | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # LightningCLI / jsonargparse wrap errors raised while instantiating classes from a
        # config; the user-facing HVPSError is then somewhere in the cause chain.
        user_error = find_user_error(exc, argv)
        if debug or user_error is None:
            raise
        print(f"hvps {command}: error: {user_error}", file=sys.stderr)
        return user_error.exit_code
    except KeyboardInterrupt:
        print(f"hvps {command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Terminated:
        print(f"hvps {command}: terminated; nothing half-written was kept", file=sys.stderr)
        return 143
    finally:
        _restore_sigterm(previous_handler)


class Terminated(BaseException):
    """SIGTERM, raised where the command is, so that its ``finally`` blocks clean up as for Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _stop_on_sigterm() -> object:
    # Python's default for SIGTERM ends the process at once, leaving partial output folders and
    # worker processes; as an exception it unwinds like KeyboardInterrupt. Only the main thread
    # may set handlers (tests call main() from others too).
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous: object) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def entry_point() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
