"""gpustack-core engine plugin for vox-box (speech-to-text and text-to-speech, OpenAI audio API)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpustack_core import Engine, hookimpl
from gpustack_core.engines import (
    accelerated_devices,
    install_venv,
    launch_env,
    list_installations,
    located_on_path,
    probe_host,
    refuse_owned_flags,
    remove_installation,
)
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    HttpProbe,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

__all__ = ["VoxBoxEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host",
        "--port",
        "--model",
        "--device",
        "--data-dir",
        "--huggingface-repo-id",
        "--model-scope-model-id",
    }
)
CATEGORIES = (ModelCategory.SPEECH_TO_TEXT, ModelCategory.TEXT_TO_SPEECH)


class VoxBoxEngine(Engine):
    """``vox-box start`` for Whisper/FunASR (speech to text) and CosyVoice/Bark/Dia (text to speech)
    models from a local directory, on one NVIDIA GPU or the CPU."""

    name = "vox-box"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """Audio models (their own formats, listed as 'other' and safetensors); CPU and NVIDIA."""
        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS, ModelFormat.OTHER),
            categories=CATEGORIES,
            vendors=("cpu", "nvidia"),
            openai_endpoints=("/v1/models", "/v1/audio/transcriptions", "/v1/audio/speech"),
        )

    def default_version(self) -> str:
        """The vox-box release this plugin targets."""
        return "0.0.20"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """``vox-box`` on PATH (version ``system``), then virtualenvs under the engines directory."""
        return located_on_path(self.name, "vox-box") + list_installations(options, self.name)

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``pip install vox-box==<version>`` into its own virtualenv."""
        return install_venv(self.name, version, [f"vox-box=={version}"], "vox-box", options)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a virtualenv this plugin installed."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``vox-box start --model DIR --host H --port P --device cuda:0|cpu [--data-dir WORK]``."""
        deployment = request.deployment
        extra = refuse_owned_flags(self.name, deployment.extra_args, OWNED_FLAGS)
        if deployment.category not in CATEGORIES:
            raise EngineArgumentError(
                f"engine 'vox-box' does not serve {deployment.category.value!r} models; "
                "use speech_to_text or text_to_speech"
            )
        if request.node_count > 1:
            raise EngineArgumentError("engine 'vox-box' runs on one worker")
        if not request.model_paths:
            raise EngineArgumentError("engine 'vox-box' needs the local path of the model directory")
        model_dir = request.model_paths[0]
        if Path(model_dir).suffix:
            model_dir = str(Path(model_dir).parent)
        device = "cuda:0" if accelerated_devices(request) else "cpu"
        argv = [request.installation.executable, "start", "--model", model_dir, "--host", request.host]
        argv += ["--port", str(request.port), "--device", device]
        if request.work_dir:
            argv += ["--data-dir", str(Path(request.work_dir) / "data")]
        return LaunchSpec(
            argv=(*argv, *extra),
            env=launch_env(request),
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=Path(model_dir).name,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the vox-box engine."""
    register(VoxBoxEngine())
