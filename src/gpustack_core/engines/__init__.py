"""Helpers shared by engine plugins: flag validation and pinned versions side by side.

Engine plugins themselves live in their own distributions (``plugins/engines/*``); this package
holds what they have in common so that each plugin stays a small module.
"""

from .flags import emitted_flags, refuse_owned_flags, unknown_flags
from .versions import (
    ENGINES_DIR_ENV,
    MARKER_FILE,
    default_engine_options,
    default_engines_dir,
    install_lock,
    install_venv,
    list_installations,
    record_installation,
    remove_installation,
    version_dir,
    version_sort_key,
)

__all__ = [
    "ENGINES_DIR_ENV",
    "MARKER_FILE",
    "default_engine_options",
    "default_engines_dir",
    "emitted_flags",
    "install_lock",
    "install_venv",
    "list_installations",
    "record_installation",
    "refuse_owned_flags",
    "remove_installation",
    "unknown_flags",
    "version_dir",
    "version_sort_key",
]
