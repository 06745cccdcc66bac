"""gpustack-core engine plugin for vox-box (speech-to-text and text-to-speech, OpenAI audio API)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.types import ModelCategory, ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec


__all__ = ["VoxBoxEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "--model", "--device", "--data-dir",
        "--huggingface-repo-id", "--model-scope-model-id",
    }
)  # fmt: skip
CATEGORIES = (ModelCategory.SPEECH_TO_TEXT, ModelCategory.TEXT_TO_SPEECH)


class VoxBoxEngine(engines.VenvEngine):
    """``vox-box start`` for Whisper/FunASR (speech to text) and CosyVoice/Bark/Dia (text to speech)
    models from a local directory, on one NVIDIA GPU or the CPU."""

    name = "vox-box"
    owned_flags = OWNED_FLAGS
    requirements = ("vox-box=={version}",)
    program = system_program = "vox-box"

    def capabilities(self) -> EngineCapabilities:
        """Audio models (their own formats, listed as 'other' and safetensors); CPU and NVIDIA."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS, ModelFormat.OTHER),
            categories=CATEGORIES,
            vendors=("cpu", "nvidia"),
            openai_endpoints=("/v1/models", "/v1/audio/transcriptions", "/v1/audio/speech"),
        )

    def default_version(self) -> str:
        """The vox-box release this plugin targets."""
        return "0.0.21"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``vox-box start --model DIR --host H --port P --device cuda:0|cpu [--data-dir WORK]``."""
        extra = engines.user_args(self, request)
        engines.check_served(self, request)
        model_dir = engines.model_directory(self, request, file_suffixes=None)  # audio models' files vary
        device = "cuda:0" if engines.accelerated_devices(request) else "cpu"
        argv = [request.installation.executable, "start", "--model", model_dir, "--host", request.host]
        argv += ["--port", str(request.port), "--device", device]
        if request.work_dir:
            argv += ["--data-dir", str(Path(request.work_dir) / "data")]
        return engines.make_launch_spec(request, (*argv, *extra), served_name=Path(model_dir).name)


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the vox-box engine."""
    register(VoxBoxEngine())
