"""``gpustack-core schedule`` on the example cluster descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_places_the_example_deployment(clean_plugin_env: None) -> None:
    result = CliRunner().invoke(build_app(), ["schedule", "--explain", str(EXAMPLES / "cluster.json")])
    assert result.exit_code == 0, result.output
    assert "replica 0: worker-a [worker-a:cuda:1] (single_device)" in result.output
    assert "placed replica 1 of 'qwen72b'" in result.output


def test_explains_an_unplaceable_deployment(clean_plugin_env: None) -> None:
    path = EXAMPLES / "cluster-unplaceable.json"
    result = CliRunner().invoke(build_app(), ["schedule", "--explain", str(path)])
    assert result.exit_code == 1
    assert "no worker fits replica 0 of 'llama405b'" in result.output
    assert "worker-a:cuda:1: needs 243.1 GiB on one GPU; worker-a:cuda:1 has 119.0 GiB free" in result.output
    for name in ("worker-a", "worker-b", "worker-c", "worker-d"):
        assert name in result.output
    as_json = CliRunner().invoke(build_app(), ["schedule", "--json", str(path)])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["results"][0]["placement"] is None
    assert {r["policy"] for r in data["results"][0]["explanation"]["rejections"]} == {
        "resource_fit",
        "worker_ready",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), ('{"workers": []}', "does not describe a cluster")],
)
def test_bad_input_is_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(content)
    result = CliRunner().invoke(build_app(), ["schedule", str(path)])
    assert result.exit_code == 2
    # rich wraps the error panel at the terminal width, wherever the temporary path ends
    flat = " ".join(result.output.replace("│", " ").split())
    assert message in flat, result.output
