"""gpustack-core engine plugin for Acme, an OpenAI-compatible server installed with pip (``acme-serve``)."""

from __future__ import annotations

from collections.abc import Callable

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec, ModelCategory, ModelFormat

__all__ = ["AcmeEngine", "gpustack_register_engines"]


class AcmeEngine(engines.VenvEngine):
    """``acme-serve`` for safetensors LLMs on the CPU, one virtual environment per version."""

    name = "acme"
    #: Every flag the plugin sets itself: refused in the deployment's extra arguments.
    owned_flags = frozenset({"--model", "--host", "--port", "--served-model-name"})
    #: What pip installs into <engines_dir>/acme/<version>/, and the program it provides there.
    requirements = ("acme-serve=={version}",)
    program = "acme-serve"
    #: An acme-serve found on PATH is listed too, as version "system".
    system_program = "acme-serve"

    def capabilities(self) -> EngineCapabilities:
        """safetensors LLMs on the CPU, one worker per replica."""
        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=(ModelCategory.LLM,),
            vendors=("cpu",),
            openai_endpoints=engines.TEXT_ENDPOINTS,
        )

    def default_version(self) -> str:
        """The acme-serve release this plugin was verified against."""
        return "1.0.0"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``acme-serve --model DIR --host H --port P --served-model-name NAME [extra arguments]``."""
        extra = engines.user_args(self, request)  # owned flags refused, the rest passed through
        engines.check_served(self, request)  # a category it does not claim, or several workers
        argv = [request.installation.executable, "--model", engines.model_directory(self, request)]
        argv += ["--host", request.host, "--port", str(request.port)]
        argv += ["--served-model-name", engines.served_model_name(request), *extra]
        return engines.make_launch_spec(request, argv)  # readiness and health: GET /health


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the Acme engine."""
    register(AcmeEngine())
