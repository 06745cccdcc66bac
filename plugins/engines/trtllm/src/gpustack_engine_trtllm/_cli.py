"""Options of ``trtllm-serve serve``, recorded from two stored snapshots of its source.

Source: NVIDIA/TensorRT-LLM ``tensorrt_llm/commands/serve.py``, the click options of
``@click.command("serve")`` (``MODEL`` is a positional argument; aliases as declared there).
Two versions of that file could be read; neither is a release tag, and the file of the default
release, 1.2.1 (``release/1.2.1``; the Triton backend pins it as submodule commit 376f7e1bd8ed of
triton-inference-server/TensorRT-LLM), was not among the stored versions:

* commit 4c05a74891e4df8066f08ed4ce14b0972abe4e25: an older ``main`` (``--tp_size``/``--pp_size``
  without their long aliases, no stability tags, no tool parser or chat template options);
* commit 00209af149e7774406881a37283dce303571eb11: a ``main`` after 2026-01-29 (it holds the gRPC
  server of NVIDIA/TensorRT-LLM#11037, merged that day and in no pip release as of 2026-02-02),
  so the 1.3 pre-release line, newer than the 1.2 release branch.

The plugin emits only flags in :data:`TRTLLM_SERVE_FLAGS_BOTH`, the options both snapshots declare;
each of those (``--host``, ``--port``, ``--backend``, ``--tp_size``, ``--pp_size``, ``--max_seq_len``)
is also in the release documentation of 0.18.2 (nvidia.github.io/TensorRT-LLM/0.18.2/commands/
trtllm-serve.html), so they span the releases before and after 1.2.1.
"""

from __future__ import annotations

__all__ = ["TRTLLM_SERVE_FLAGS_00209AF", "TRTLLM_SERVE_FLAGS_4C05A74", "TRTLLM_SERVE_FLAGS_BOTH"]

#: ``serve`` at commit 00209af149e7 (``main`` after 2026-01-29; 39 names).
TRTLLM_SERVE_FLAGS_00209AF: frozenset[str] = frozenset(
    {
        "--tokenizer",
        "--custom_tokenizer",
        "--host",
        "--port",
        "--backend",
        "--custom_module_dirs",
        "--log_level",
        "--max_beam_width",
        "--max_batch_size",
        "--max_num_tokens",
        "--max_seq_len",
        "--tensor_parallel_size",
        "--tp_size",
        "--pipeline_parallel_size",
        "--pp_size",
        "--context_parallel_size",
        "--cp_size",
        "--moe_expert_parallel_size",
        "--ep_size",
        "--moe_cluster_parallel_size",
        "--cluster_size",
        "--gpus_per_node",
        "--free_gpu_memory_fraction",
        "--kv_cache_free_gpu_memory_fraction",
        "--num_postprocess_workers",
        "--trust_remote_code",
        "--revision",
        "--config",
        "--extra_llm_api_options",
        "--reasoning_parser",
        "--tool_parser",
        "--metadata_server_config_file",
        "--server_role",
        "--fail_fast_on_attention_window_too_large",
        "--otlp_traces_endpoint",
        "--disagg_cluster_uri",
        "--enable_chunked_prefill",
        "--media_io_kwargs",
        "--chat_template",
    }
)

#: ``serve`` at commit 4c05a74891e4 (an older ``main``; 25 names).
TRTLLM_SERVE_FLAGS_4C05A74: frozenset[str] = frozenset(
    {
        "--tokenizer",
        "--host",
        "--port",
        "--backend",
        "--log_level",
        "--max_beam_width",
        "--max_batch_size",
        "--max_num_tokens",
        "--max_seq_len",
        "--tp_size",
        "--pp_size",
        "--ep_size",
        "--cluster_size",
        "--gpus_per_node",
        "--kv_cache_free_gpu_memory_fraction",
        "--num_postprocess_workers",
        "--trust_remote_code",
        "--extra_llm_api_options",
        "--reasoning_parser",
        "--metadata_server_config_file",
        "--server_role",
        "--fail_fast_on_attention_window_too_large",
        "--disagg_cluster_uri",
        "--enable_chunked_prefill",
        "--media_io_kwargs",
    }
)

#: Options both snapshots declare: what launch specs for 1.2.1 and 1.0.0 are checked against.
TRTLLM_SERVE_FLAGS_BOTH: frozenset[str] = TRTLLM_SERVE_FLAGS_00209AF & TRTLLM_SERVE_FLAGS_4C05A74
