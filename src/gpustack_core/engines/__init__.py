"""Helpers shared by engine plugins: flag validation and pinned versions side by side.

Engine plugins themselves live in their own distributions (``plugins/engines/*``); this package
holds what they have in common so that each plugin stays a small module.
"""

from .flags import commands_of, emitted_flags, refuse_owned_flags, unknown_flags
from .launch import accelerated_devices, launch_env, probe_host, served_model_name
from .versions import (
    ENGINES_DIR_ENV,
    MARKER_FILE,
    default_engine_options,
    default_engines_dir,
    ensure_installed,
    install_lock,
    install_venv,
    list_installations,
    located_on_path,
    record_installation,
    remove_installation,
    version_dir,
    version_sort_key,
)

__all__ = [
    "ENGINES_DIR_ENV",
    "MARKER_FILE",
    "accelerated_devices",
    "commands_of",
    "default_engine_options",
    "default_engines_dir",
    "emitted_flags",
    "ensure_installed",
    "install_lock",
    "install_venv",
    "launch_env",
    "list_installations",
    "located_on_path",
    "probe_host",
    "record_installation",
    "refuse_owned_flags",
    "remove_installation",
    "served_model_name",
    "unknown_flags",
    "version_dir",
    "version_sort_key",
]
