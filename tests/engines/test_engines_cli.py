"""``gpustack-core engines``: listing plugins and installed versions, removing a version."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpustack_core.cli.app import build_app
from gpustack_core.engines import record_installation, version_dir
from gpustack_core.types import EngineInstallation, EngineOptions


def seed(engines_dir: Path, version: str) -> None:
    options = EngineOptions(engines_dir=str(engines_dir))
    directory = version_dir(options, "llama.cpp", version)
    (directory / "bin").mkdir(parents=True)
    (directory / "bin" / "llama-server").write_text("#!/bin/sh\n")
    record_installation(
        EngineInstallation(
            engine="llama.cpp",
            version=version,
            executable=str(directory / "bin" / "llama-server"),
            prefix=str(directory),
            origin="built",
        ),
        directory,
    )


def test_lists_plugins_with_capabilities_and_installed_versions(
    tmp_path: Path, clean_plugin_env: None
) -> None:
    seed(tmp_path, "0.3.36")
    seed(tmp_path, "0.3.9")
    result = CliRunner().invoke(build_app(), ["engines", "--json", "--engines-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {row["name"]: row for row in data["engines"]}
    assert {"llama.cpp", "vllm", "sglang", "trtllm", "mindie", "llama-box", "vox-box"} <= set(by_name)
    llama = by_name["llama.cpp"]
    assert llama["distribution"] == "gpustack-core-engine-llama-cpp"
    assert llama["capabilities"]["formats"] == ["gguf"]
    built = [i["version"] for i in llama["installed"] if i["origin"] == "built"]
    assert built == ["0.3.9", "0.3.36"]
    table = CliRunner().invoke(build_app(), ["engines", "list", "--engines-dir", str(tmp_path)])
    assert table.exit_code == 0
    assert "llama.cpp" in table.output


def test_remove_a_version_and_refuse_an_unknown_one(tmp_path: Path, clean_plugin_env: None) -> None:
    seed(tmp_path, "0.3.36")
    app = build_app()
    removed = CliRunner().invoke(
        app, ["engines", "remove", "llama.cpp", "0.3.36", "--engines-dir", str(tmp_path)]
    )
    assert removed.exit_code == 0, removed.output
    assert not (tmp_path / "llama.cpp" / "0.3.36").exists()
    missing = CliRunner().invoke(
        app, ["engines", "remove", "llama.cpp", "0.3.36", "--engines-dir", str(tmp_path)]
    )
    assert missing.exit_code == 1
    assert "is not installed" in missing.output
    unknown = CliRunner().invoke(app, ["engines", "remove", "nope", "1", "--engines-dir", str(tmp_path)])
    assert unknown.exit_code == 1
    assert "no engines plugin named 'nope'" in unknown.output
