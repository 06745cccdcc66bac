"""The engine plugin kit: what engine plugins have in common, so that each plugin holds only what
is its own (capabilities, owned flags, the versions it knows, the launch spec).

Engine plugins live in their own distributions (``plugins/engines/*``, or a third party's); this
package is what they build on:

- base classes (:mod:`.bases`): :class:`VenvEngine` for a Python engine installed with pip into a
  virtual environment per version, :class:`VersionedEngine` for versions recorded under the engines
  directory plus a system install (``system_program`` on ``PATH``);
- installing (:mod:`.versions`): :func:`install_version` (all or nothing, under a lock, for any
  engine that builds or downloads its versions), :func:`run_logged`, :func:`install_venv`, and the
  engines directory's layout;
- launching (:mod:`.launch`): checks (:func:`check_served`, :func:`user_args`, :func:`model_path`),
  facts from the request (:func:`model_directory`, :func:`served_model_name`,
  :func:`accelerated_devices`, :func:`gpu_layers`, :func:`tensor_split`) and
  :func:`make_launch_spec`;
- flags (:mod:`.flags`): owned-flag refusal and checks against an engine's recorded CLI.

``docs/plugin-authoring.md`` walks through a complete plugin built on the kit.
"""

from .bases import TEXT_ENDPOINTS, VenvEngine, VersionedEngine
from .flags import commands_of, emitted_flags, refuse_owned_flags, unknown_flags
from .launch import (
    SAFETENSORS_FILES,
    accelerated_devices,
    check_served,
    gpu_layers,
    launch_env,
    make_launch_spec,
    model_directory,
    model_path,
    probe_host,
    served_model_name,
    tensor_split,
    user_args,
)
from .versions import (
    ENGINES_DIR_ENV,
    MARKER_FILE,
    default_engine_options,
    default_engines_dir,
    ensure_installed,
    install_lock,
    install_progress,
    install_venv,
    install_version,
    list_installations,
    located_on_path,
    record_installation,
    remove_installation,
    run_logged,
    version_dir,
    version_sort_key,
)

__all__ = [
    "ENGINES_DIR_ENV",
    "MARKER_FILE",
    "SAFETENSORS_FILES",
    "TEXT_ENDPOINTS",
    "VenvEngine",
    "VersionedEngine",
    "accelerated_devices",
    "check_served",
    "commands_of",
    "default_engine_options",
    "default_engines_dir",
    "emitted_flags",
    "ensure_installed",
    "gpu_layers",
    "install_lock",
    "install_progress",
    "install_venv",
    "install_version",
    "launch_env",
    "list_installations",
    "located_on_path",
    "make_launch_spec",
    "model_directory",
    "model_path",
    "probe_host",
    "record_installation",
    "refuse_owned_flags",
    "remove_installation",
    "run_logged",
    "served_model_name",
    "tensor_split",
    "unknown_flags",
    "user_args",
    "version_dir",
    "version_sort_key",
]
