"""The shared entry point of the experiment binaries: ``_cli.run(main)``.

Every binary under ``experiments/`` calls :func:`run` instead of ``app.run``.
A mistake on the command line or in the config then ends the process with one
line on stderr and exit status 2, with no traceback:

- an unknown or misspelt flag or config field (``--config.optimizer.learnin_rate``:
  "did you mean 'optimizer.learning_rate'?"), a value that does not parse, a
  missing config file, positional arguments;
- a ``ValueError`` from the library's validation (invalid sizes, ranges,
  names; the message names the field), and a ``TypeError`` raised inside a
  :func:`config_errors` block (the binaries validate the config there);
- a :class:`~optim_lab.training.errors.RunError` (a locked workdir, a
  diverged run, ...) prints its line too, with exit status 1.

Anything else is an internal error and keeps its traceback; ``--debug`` shows
the traceback of every error.

**One config, any optimizer.** :func:`command_line_config` reads the config
flag and tells the config file's fields from the command line's
(``config_flags.get_override_values``). After ``--config.optimizer.name=X``,
the file's hyperparameters that ``X`` does not take are unset, with one
``note:`` line naming them; a hyperparameter *given on the command line* that
``X`` does not take is an error. **Resetting a field**: ``None`` is a value for
every config field (``--config.optimizer.eps=None``); for optimizer and schedule
fields it means "the constructor's default".
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import is_config_flag

from optim_lab import _registry
from optim_lab.optimizers import registry as optimizer_registry
from optim_lab.training import errors as run_errors

FLAGS = flags.FLAGS
CONFIG_ERROR_EXIT = 2  # the command line or the config is wrong
RUN_ERROR_EXIT = 1  # the run stopped for a reason the user must act on


class ConfigError(ValueError):
    """A command-line or config mistake; the message names the field."""


def run(main: Callable[[list[str]], Any]) -> None:
    """``app.run(main)`` with one-line errors (exit 2) and ``--debug``."""
    _define_debug_flag()
    _accept_none_on_the_command_line()
    app.run(_guarded(main), flags_parser=_parse_flags)


# --- errors --------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


def _debug_requested(argv: Sequence[str]) -> bool:
    return any(re.fullmatch(r"--?debug(=(true|t|1|yes|y))?", a, re.IGNORECASE)
               for a in argv[1:])


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Turns a ``ValueError`` or ``TypeError`` in the block into a :class:`ConfigError`.

    Wrap validation only (e.g. ``train.setup(config)``): a ``TypeError`` there
    is an invalid config value (the library's checks raise it for a value of
    the wrong kind), elsewhere it is a bug and keeps its traceback.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def _guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    @functools.wraps(main)
    def guarded(argv: list[str]) -> Any:
        if not FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
        try:
            if len(argv) > 1:
                raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])} "
                                  "(flags are --name=value)")
            return main(argv)
        except (ValueError, app.UsageError) as e:  # ConfigError is a ValueError
            if FLAGS.debug:
                raise
            _fail(str(e), CONFIG_ERROR_EXIT)
        except run_errors.RunError as e:
            if FLAGS.debug:
                raise
            _fail(str(e), RUN_ERROR_EXIT)
    return guarded


# --- flag parsing ----------------------------------------------------------------


def _define_debug_flag() -> None:
    if "debug" not in FLAGS:
        flags.DEFINE_bool("debug", False, "Show the traceback of every error "
                          "(by default a config or flag error is one line).")


class _NoneOr(flags.ArgumentParser):
    """``"None"`` parses to ``None`` (reset the field); else the wrapped parser."""

    def __init__(self, inner: flags.ArgumentParser):
        self._inner = inner

    def parse(self, argument: Any) -> Any:
        if isinstance(argument, str) and argument.strip() in ("None", "none"):
            return None
        return self._inner.parse(argument)

    def flag_type(self) -> str:
        return self._inner.flag_type()


def _accept_none_on_the_command_line() -> None:
    """Lets ``--config.<float|int|bool|str field>=None`` reset a field.

    ml_collections parses such fields with absl's typed parsers, which reject
    ``None``; object-typed fields already parse Python literals.
    """
    for kind, inner in ((float, flags.FloatParser()), (int, flags.IntegerParser()),
                        (bool, flags.BooleanParser()), (str, flags.ArgumentParser())):
        config_flags.register_flag_parser_for_type(kind, _NoneOr(inner))


def _config_flag_names() -> list[str]:
    return [name for name in FLAGS if is_config_flag(FLAGS[name])]


def _parse_flags(argv: Sequence[str]) -> list[str]:
    """``FLAGS(argv)``; a mistake ends the process with one line, exit 2."""
    try:
        rest = FLAGS(argv)
        for name in _config_flag_names():
            if FLAGS[name].present and not isinstance(FLAGS[name].value,
                                                      ml_collections.ConfigDict):
                raise ConfigError(f"--{name}: the config file could not be loaded")
        return rest
    except Exception as e:  # noqa: BLE001 - explained below or re-raised
        if _debug_requested(argv):
            raise
        problem = _config_problem(argv)
        if problem is None and isinstance(e, (flags.Error, ConfigError)):
            problem = str(e)
        if problem is None:
            raise
        _fail(problem, CONFIG_ERROR_EXIT)


def _config_problem(argv: Sequence[str]) -> str | None:
    """What is wrong with a config flag's file or overrides, if anything."""
    for name in _config_flag_names():
        path = _flag_argument(name, argv)
        if path is None:
            continue
        filename = path.split(":", 1)[0]
        try:
            with open(filename):
                pass
        except OSError as e:
            return f"--{name}: cannot read config file {filename!r} ({e.strerror})"
        try:
            config = FLAGS[name].parser.parse(path)
            if not isinstance(config, ml_collections.ConfigDict):
                raise TypeError(f"get_config() returned {type(config).__name__}")
        except Exception as e:  # noqa: BLE001 - a bug in the config file
            last = [line for line in str(e).splitlines() if line.strip()]
            what = last[-1].strip() if last else ""
            if not re.match(r"\w+(Error|Exception)\b", what):
                what = f"{type(e).__name__}: {what}"
            return (f"--{name}={path}: the config file raised {what} (--debug "
                    "for the traceback)")
        for field in _override_fields(name, argv):
            problem = _field_problem(config, field)
            if problem:
                return f"--{name}.{field}: {problem}"
    return None


def _flag_argument(name: str, argv: Sequence[str]) -> str | None:
    """The value given to ``--name`` on the command line, if any."""
    for i, arg in enumerate(argv[1:], 1):
        if arg == "--":
            break
        m = re.fullmatch(rf"--?{re.escape(name)}(=(.*))?", arg, re.DOTALL)
        if m:
            if m.group(1) is not None:
                return m.group(2)
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def _override_fields(name: str, argv: Sequence[str]) -> list[str]:
    fields = []
    for arg in argv[1:]:
        if arg == "--":
            break
        m = re.match(rf"--?(no)?{re.escape(name)}\.([^=]+)", arg)
        if m:
            fields.append(m.group(2))
    return fields


def _field_problem(config: ml_collections.ConfigDict, field: str) -> str | None:
    """Why ``field`` (dotted) is not a field of ``config``, or None."""
    node, walked = config, []
    for part in field.split("."):
        key = re.sub(r"\[.*\]$", "", part)
        if not isinstance(node, ml_collections.ConfigDict):
            return f"{'.'.join(walked)!r} is a value, not a config section"
        if key not in node:
            known = list(node.keys())
            prefix = ".".join(walked + [""])
            hint = _registry.did_you_mean(key, known)
            if hint:
                hint = _registry.did_you_mean(prefix + key, [prefix + k for k in known])
            else:
                hint = f"; {'.'.join(walked) or 'the config'} has {', '.join(known)}"
            return f"unknown config field {prefix + key!r}{hint}"
        node = node[key]
        walked.append(key)
    return None


# --- one config, any optimizer ----------------------------------------------------


def command_line_config(name: str = "config", *, notify: bool = True
                        ) -> ml_collections.ConfigDict:
    """The parsed config of flag ``--name``, fitted to the command line's optimizer.

    See :func:`fit_optimizer`; the dropped fields are reported on one
    ``note:`` line on stderr (if ``notify``: process 0 of a multi-process run
    passes True, the others False).
    """
    config = FLAGS[name].value
    given = config_flags.get_override_values(FLAGS[name])
    dropped = fit_optimizer(config, given, flag=name)
    if dropped and notify:
        print(f"note: optimizer {config.optimizer.name} does not take "
              f"{', '.join(dropped)} (set by the config file); dropped",
              file=sys.stderr, flush=True)
    return config


def fit_optimizer(config: ml_collections.ConfigDict, given: Collection[str], *,
                  flag: str = "config") -> tuple[str, ...]:
    """Unsets the config file's hyperparameters the chosen optimizer does not take.

    Args:
        config: A config with an ``optimizer`` section (changed in place).
        given: Dotted fields set on the command line (``"optimizer.name"``).
        flag: The config flag's name, for messages.

    Returns:
        The hyperparameters unset (set to ``None``, "not given"): only when
        ``optimizer.name`` is in ``given``, the file's non-``None``
        hyperparameters that optimizer does not take. Fields of the section
        that are no optimizer's hyperparameter (``name``, ``learning_rate``,
        training options such as ``state_dtype``) are never touched.

    Raises:
        ConfigError: a hyperparameter in ``given`` (not ``None``) that the
            optimizer does not take.
        ValueError: an unknown optimizer name.
    """
    section = config.optimizer
    name = section.name
    taken = optimizer_registry.hyperparameters_of(name)
    untaken = [k for k in optimizer_registry.hyperparameter_names()
               if k in section and k not in taken and section[k] is not None]
    for key in untaken:
        if f"optimizer.{key}" in given:
            raise ConfigError(
                f"--{flag}.optimizer.{key}: optimizer {name!r} does not take {key!r}; "
                f"it takes learning_rate, {', '.join(taken)}")
    if "optimizer.name" not in given:
        return ()
    for key in untaken:
        section[key] = None
    return tuple(untaken)


# --- flags of the drivers -------------------------------------------------------


def check_choices(name: str, choices: Collection[str]) -> None:
    """Validates list flag ``--name``: every item one of ``choices``."""
    def check(values: Sequence[str] | None) -> bool:
        for value in values or ():
            if value not in choices:
                raise flags.ValidationError(
                    f"unknown value {value!r}{_registry.did_you_mean(value, choices)}; "
                    f"choose from {', '.join(choices)}")
        return True
    flags.register_validator(name, check)


def check_positive_floats(name: str) -> None:
    """Validates list flag ``--name``: every item a positive number."""
    def check(values: Sequence[str] | None) -> bool:
        for value in values or ():
            try:
                ok = float(value) > 0
            except ValueError:
                ok = False
            if not ok:
                raise flags.ValidationError(f"{value!r} is not a positive number")
        return True
    flags.register_validator(name, check)
