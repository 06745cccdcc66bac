"""Flags of ``trtllm-serve serve`` that this plugin emits or owns, recorded from source.

Source: TensorRT-LLM ``tensorrt_llm/commands/serve.py`` at commit
00209af149e7774406881a37283dce303571eb11: the click options of ``@click.command("serve")``
(``MODEL`` is a positional argument; aliases as declared there).
"""

from __future__ import annotations

__all__ = ["TRTLLM_SERVE_FLAGS"]

TRTLLM_SERVE_FLAGS: frozenset[str] = frozenset(
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
        "--tensor_parallel_size",
        "--tp_size",
        "--pipeline_parallel_size",
        "--pp_size",
        "--moe_expert_parallel_size",
        "--ep_size",
        "--gpus_per_node",
        "--free_gpu_memory_fraction",
        "--kv_cache_free_gpu_memory_fraction",
        "--trust_remote_code",
        "--config",
        "--extra_llm_api_options",
        "--reasoning_parser",
        "--tool_parser",
        "--chat_template",
    }
)
