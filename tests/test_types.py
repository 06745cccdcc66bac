"""Value types: JSON round trip, parsing of references, validation messages."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from gpustack_core import types as t
from gpustack_core.errors import InvalidModelReferenceError

DEVICE = t.Device(
    accelerator="cuda",
    vendor="nvidia",
    index=0,
    uuid="GPU-f3d76b44-fda7-547e-b663-066d37ebc707",
    name="NVIDIA H200",
    compute_capability="9.0",
    memory_total_bytes=150754820096,
    memory_used_bytes=644939776,
    core_count=132,
    utilization_percent=0.0,
    temperature_celsius=38.0,
    driver_version="580.159.04",
    runtime_version="13.0",
    pci_bus_id="00000000:00:06.0",
)
WORKER = t.WorkerInfo(name="worker-a", labels={"zone": "a"}, devices=(DEVICE,), memory_total_bytes=2**36)
REF = t.ModelRef.parse("huggingface:Qwen/Qwen2.5-0.5B-Instruct-GGUF@main#Q4_K_M")
CLAIM = t.ResourceClaim(
    strategy="single_device",
    devices=(t.DeviceClaim(memory_bytes=2**30, items=(t.MemoryItem(label="weights", bytes=2**30),)),),
    host_memory_bytes=2**20,
)
DEPLOYMENT = t.Deployment(
    name="qwen",
    model=REF,
    engine="llama.cpp",
    replicas=2,
    label_selector=(t.LabelRequirement(key="zone", operator="in", values=("a", "b")),),
    gpu_selector=(t.DeviceRef.parse("worker-a:cuda:0"),),
)
PLACEMENT = t.Placement(
    deployment="qwen",
    replica=0,
    worker="worker-a",
    devices=(t.DeviceRef.parse("worker-a:cuda:0"),),
    claim=CLAIM,
    claimed_device_memory_bytes={"worker-a:cuda:0": 2**30},
)
INSTALLATION = t.EngineInstallation(engine="llama.cpp", version="0.3.36", executable="/opt/llama-server")
EXAMPLES: list[BaseModel] = [
    DEVICE,
    WORKER,
    REF,
    CLAIM,
    t.ResourceEstimate(model=str(REF), claims=(CLAIM,)),
    DEPLOYMENT,
    PLACEMENT,
    t.ModelMetadata(
        ref=REF,
        format=t.ModelFormat.GGUF,
        files=(t.ModelFile(path="q4.gguf", size_bytes=10, format=t.ModelFormat.GGUF),),
        gguf_metadata={"general.architecture": "llama"},
    ),
    t.DownloadProgress(
        file="q4.gguf", downloaded_bytes=5, total_bytes=10, bytes_per_second=1.5, eta_seconds=3.3
    ),
    t.DownloadResult(ref=REF, root="/c", paths=("/c/q4.gguf",)),
    t.SourceOptions(cache_dir="/c", offline=True),
    t.PeerCache(url="http://10.0.0.2:10150/models/cache", headers={"Authorization": "Bearer x"}),
    t.SourceOptions(cache_dir="/c", peers=(t.PeerCache(url="http://10.0.0.2:10150/models/cache"),)),
    INSTALLATION,
    t.EngineCapabilities(
        formats=(t.ModelFormat.GGUF,), categories=(t.ModelCategory.LLM,), vendors=("nvidia", "cpu")
    ),
    t.LaunchRequest(
        deployment=DEPLOYMENT,
        placement=PLACEMENT,
        installation=INSTALLATION,
        model_paths=("/c/q4.gguf",),
        devices=(DEVICE,),
        visibility_env={"CUDA_VISIBLE_DEVICES": "0"},
        port=40000,
    ),
    t.GroupMember(rank=1, worker="worker-b", address="10.0.0.2", devices=(DEVICE,)),
    t.LaunchSpec(argv=("llama-server", "-m", "/c/q4.gguf"), port=40000, served_model_name="qwen"),
    t.Candidate(worker=WORKER, devices=(DEVICE,), claim=CLAIM),
    t.PolicyContext(deployment=DEPLOYMENT, workers=(WORKER,), placements=(PLACEMENT,)),
    t.Rejection(policy="resource_fit", candidate="worker-a:cuda:0", reason="needs 14.2 GiB"),
    t.DetectOptions(tool_timeout_s=1.5),
    t.DeviceHealth(uuid="x", healthy=False, message="gone"),
    t.EngineOptions(engines_dir="/e"),
    t.LabelRequirement(key="gpu", operator="exists"),
    t.DeviceClaim(memory_bytes=5),
    t.MemoryItem(label="kv", bytes=7),
    t.ModelFile(path="a/b.safetensors", size_bytes=3, sha256="00" * 32, format=t.ModelFormat.SAFETENSORS),
    t.HttpProbe(path="/v1/models", expect_status=200),
    t.DeviceRef.parse("w:cuda:1"),
    t.GGUFTensor(name="blk.0.attn_q.weight", shape=(64, 64), ggml_type=8, ggml_type_name="Q8_0", offset=0),
    t.PerformancePreset(mode="throughput"),
    t.SpeculativeDecoding(method="draft_model", draft_model="/models/draft.gguf", num_speculative_tokens=4),
    t.KVCacheExtension(kind="lmcache", host_memory_bytes=2**30, disk_path="/kv", disk_bytes=2**34),
    t.RuntimeWorkload(engine="llama.cpp", weight_types=("F16",), dense_blas=True),
    t.RuntimeOverhead(
        device_items=(t.MemoryItem(label="context", bytes=2**29),),
        host_items=(t.MemoryItem(label="libraries", bytes=2**28, first_request=True),),
        allocation_granularity_bytes=2**21,
        sources=("docs/benchmarks/estimation-h200.md",),
    ),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
def test_json_round_trip(value: BaseModel) -> None:
    text = value.model_dump_json()
    again = type(value).model_validate_json(text)
    assert again == value
    assert again.model_dump_json() == text


def test_every_exported_value_type_has_a_round_trip_example() -> None:
    exported = {
        name
        for name in t.__all__
        if isinstance(getattr(t, name), type)
        and issubclass(getattr(t, name), BaseModel)
        and name != "ValueModel"
    }
    covered = {type(v).__name__ for v in EXAMPLES}
    assert exported - covered == set()


def test_value_types_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        DEVICE.index = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="memory_total_mb"):
        t.Device.model_validate({**DEVICE.model_dump(), "memory_total_mb": 1})


def test_used_memory_above_total_is_rejected_with_numbers() -> None:
    with pytest.raises(ValidationError, match=r"memory_used_bytes \(11\) exceeds memory_total_bytes \(10\)"):
        t.Device.model_validate({**DEVICE.model_dump(), "memory_total_bytes": 10, "memory_used_bytes": 11})
    assert DEVICE.memory_free_bytes == 150754820096 - 644939776


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "huggingface:Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            ("huggingface", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", None, None),
        ),
        ("huggingface:org/repo@v1.0#Q4_K_M", ("huggingface", "org/repo", "v1.0", "Q4_K_M")),
        ("ollama:llama3.2:1b", ("ollama", "llama3.2:1b", None, None)),
        ("local:/models/with@sign/m.gguf", ("local", "/models/with@sign/m.gguf", None, None)),
        (
            "modelscope:qwen/Qwen2-0.5B#*.safetensors",
            ("modelscope", "qwen/Qwen2-0.5B", None, "*.safetensors"),
        ),
    ],
)
def test_model_ref_parse(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = t.ModelRef.parse(text)
    assert (ref.source, ref.id, ref.revision, ref.selector) == expected
    assert t.ModelRef.parse(str(ref)) == ref


@pytest.mark.parametrize("text", ["", "nosource", ":id", "local:", "hf:#Q4"])
def test_model_ref_parse_errors_say_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidModelReferenceError, match="invalid model reference"):
        t.ModelRef.parse(text)


def test_device_ref_parse() -> None:
    ref = t.DeviceRef.parse("worker-a:cuda:3")
    assert (ref.worker, ref.accelerator, ref.index) == ("worker-a", "cuda", 3)
    assert str(ref) == "worker-a:cuda:3"
    assert DEVICE.ref("worker-a") == t.DeviceRef.parse("worker-a:cuda:0")
    with pytest.raises(ValueError, match="expected 'worker:accelerator:index'"):
        t.DeviceRef.parse("worker-a:cuda")


def test_claim_and_candidate_helpers() -> None:
    assert CLAIM.device_count == 1
    assert CLAIM.total_device_memory_bytes == 2**30
    assert t.Candidate(worker=WORKER, devices=(DEVICE,), claim=CLAIM).label == "worker-a:cuda:0"
    assert t.Candidate(worker=WORKER, claim=CLAIM).label == "worker-a"


def test_performance_preset_validates_its_parts() -> None:
    from gpustack_core.types import KVCacheExtension, PerformancePreset, SpeculativeDecoding

    with pytest.raises(ValueError, match="needs draft_model"):
        SpeculativeDecoding(method="eagle3")
    with pytest.raises(ValueError, match="takes no draft_model"):
        SpeculativeDecoding(method="ngram", draft_model="/m")
    with pytest.raises(ValueError, match="both disk_path and disk_bytes"):
        KVCacheExtension(kind="lmcache", host_memory_bytes=1, disk_path="/d")
    with pytest.raises(ValueError, match="latency"):
        PerformancePreset.model_validate({"mode": "fastest"})
    preset = PerformancePreset.model_validate(
        {
            "mode": "latency",
            "speculative": {"method": "mtp"},
            "kv_cache_extension": {"kind": "hicache", "host_memory_bytes": 5},
        }
    )
    assert preset.speculative is not None
    assert preset.speculative.num_speculative_tokens == 3
