"""Command-line flags of engines: validating users' extra arguments against the flags a plugin
owns, and checking the flags a plugin emits against the engine's recorded CLI definition."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from gpustack_core.errors import EngineArgumentError

__all__ = ["commands_of", "emitted_flags", "refuse_owned_flags", "unknown_flags"]


def _flag_name(arg: str) -> str | None:
    """The flag an argument spells (``--ctx-size=4096`` -> ``--ctx-size``), or None for a value."""
    if not arg.startswith("-") or arg == "-" or arg == "--":
        return None
    if len(arg) > 1 and (arg[1].isdigit() or arg[1] == "."):
        return None  # a negative number is a value: "--seed -1"
    return arg.split("=", 1)[0]


def refuse_owned_flags(
    engine: str, args: Sequence[str], owned: Iterable[str], why: str = "from the placement and the model"
) -> tuple[str, ...]:
    """Refuse user arguments that set a flag the plugin sets itself.

    ``--flag value``, ``--flag=value`` and the short aliases listed in ``owned`` (``-m``, ``-ngl``)
    are all recognised; flags not owned pass through unchanged, in order.

    Parameters:
        engine: the engine's name, for the message.
        args: the user's extra arguments.
        owned: every spelling of every owned flag (long and short).
        why: where the plugin takes the owned values from, for the message.

    Returns:
        ``args`` as a tuple.

    Raises:
        EngineArgumentError: naming the flag, and telling the user to remove it.
    """
    owned_set = frozenset(owned)
    for arg in args:
        if not isinstance(arg, str):
            raise EngineArgumentError(f"engine {engine!r}: extra arguments must be strings, got {arg!r}")
        flag = _flag_name(arg)
        if flag is not None and flag in owned_set:
            raise EngineArgumentError(
                f"engine {engine!r} sets {flag} itself ({why}); remove {arg!r} from the deployment's "
                "extra arguments"
            )
    return tuple(args)


def emitted_flags(argv: Sequence[str]) -> list[str]:
    """The flags (``-x``/``--xx``, without ``=value``) appearing in ``argv``, in order."""
    return [flag for flag in (_flag_name(arg) for arg in argv) if flag is not None]


def unknown_flags(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """Flags in ``argv`` that are not in ``known`` (the engine's recorded CLI definition)."""
    known_set = frozenset(known)
    return [flag for flag in emitted_flags(argv) if flag not in known_set]


def commands_of(argv: Sequence[str]) -> list[tuple[str, ...]]:
    """The commands an argv runs: itself, or for ``sh -c "A && exec B"`` each of ``A`` and ``B``
    (so that the flags of each program can be checked against that program's CLI)."""
    if len(argv) == 3 and argv[0].endswith("sh") and argv[1] == "-c":
        commands: list[tuple[str, ...]] = []
        for part in argv[2].split("&&"):
            words = shlex.split(part)
            if words and words[0] == "exec":
                words = words[1:]
            if words:
                commands.append(tuple(words))
        return commands
    return [tuple(argv)]
