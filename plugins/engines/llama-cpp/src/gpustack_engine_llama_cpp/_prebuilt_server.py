"""Run llama.cpp's native HTTP server from the prebuilt ``xllamacpp`` wheel, with ``llama-server``'s
command line (the subset a deployment uses).

This file runs as a script with the Python of the prebuilt runtime's virtual environment, where
only ``xllamacpp`` is installed: it imports nothing but the standard library and ``xllamacpp``.
``xllamacpp.Server`` starts llama.cpp's server (``tools/server``) in threads of this process and
listens on ``--host``/``--port``; this process lives until SIGTERM/SIGINT, so the supervisor runs it
like any engine process.

An argument the prebuilt server does not take is refused with exit status 2 and a message that
names a native build (``gpustack-core engines install llama.cpp``) as the way to use it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

#: llama-server flags that take a value -> the ``CommonParams`` attribute they set.
VALUE_FLAGS: dict[tuple[str, ...], tuple[str, type]] = {
    ("--ctx-size", "-c"): ("n_ctx", int),
    ("--n-gpu-layers", "--gpu-layers", "-ngl"): ("n_gpu_layers", int),
    ("--batch-size", "-b"): ("n_batch", int),
    ("--ubatch-size", "-ub"): ("n_ubatch", int),
    ("--parallel", "-np"): ("n_parallel", int),
    ("--threads-http",): ("n_threads_http", int),
    ("--keep", "-n-keep"): ("n_keep", int),
}
#: Speculative-decoding flags that take a value -> the attribute path under ``CommonParams.speculative``
#: (common/arg.cpp: ``params.speculative.draft.n_max`` and so on; the wheel binds the same structs).
SPECULATIVE_FLAGS: dict[tuple[str, ...], tuple[tuple[str, ...], type]] = {
    ("--spec-draft-model", "-md", "--model-draft"): (("draft", "mparams", "path"), str),
    ("--spec-draft-n-max",): (("draft", "n_max"), int),
    ("--spec-draft-n-min",): (("draft", "n_min"), int),
    ("--spec-draft-p-min", "--draft-p-min"): (("draft", "p_min"), float),
    ("--spec-ngram-simple-size-m",): (("ngram_simple", "size_m"), int),
    ("--spec-ngram-simple-size-n",): (("ngram_simple", "size_n"), int),
}
#: ``--spec-type`` names (common/speculative.cpp's ``common_speculative_type_from_name_map``).
SPECULATIVE_TYPES: tuple[str, ...] = (
    "none", "draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark",
    "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache",
)  # fmt: skip
#: Flags without a value that switch a boolean ``CommonParams`` attribute.
SWITCH_FLAGS: dict[tuple[str, ...], tuple[str, bool]] = {
    ("--metrics",): ("endpoint_metrics", True),
    ("--slots",): ("endpoint_slots", True),
    ("--no-slots",): ("endpoint_slots", False),
    ("--jinja",): ("use_jinja", True),
    ("--no-jinja",): ("use_jinja", False),
    ("--no-warmup",): ("warmup", False),
    ("--cont-batching", "-cb"): ("cont_batching", True),
    ("--no-cont-batching", "-nocb"): ("cont_batching", False),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(
            f"xllamacpp prebuilt llama.cpp server: {message}\n"
            "The prebuilt runtime takes a subset of llama-server's flags; to use the others, install a "
            "native build (gpustack-core engines install llama.cpp) and pin it with the deployment's "
            "engine_version.\n"
        )
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command line: llama-server's flags for what the prebuilt server supports."""
    parser = _Parser(prog="xllamacpp-server", allow_abbrev=False)
    parser.add_argument("--model", "-m", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", "-a", action="append", default=[])
    parser.add_argument("--embeddings", "--embedding", action="store_true")
    parser.add_argument("--reranking", "--rerank", action="store_true")
    parser.add_argument("--pooling", choices=("none", "mean", "cls", "last", "rank"))
    parser.add_argument("--no-webui", action="store_true")
    parser.add_argument("--threads", "-t", type=int)
    parser.add_argument("--threads-batch", "-tb", type=int)
    parser.add_argument("--seed", "-s", type=int)
    for flags, (attribute, kind) in VALUE_FLAGS.items():
        parser.add_argument(*flags, dest=attribute, type=kind)
    for flags, (attribute, value) in SWITCH_FLAGS.items():
        parser.add_argument(*flags, dest=f"switch_{flags[0]}", action="store_const", const=(attribute, value))
    parser.add_argument("--spec-type", type=_spec_types, default=None)
    for flags, (path, kind) in SPECULATIVE_FLAGS.items():
        parser.add_argument(*flags, dest="spec_" + "_".join(path), type=kind)
    return parser


def _spec_types(value: str) -> list[str]:
    """``--spec-type``'s comma-separated names, each one llama.cpp knows."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SPECULATIVE_TYPES]
    if unknown or not names:
        named = ", ".join(unknown) or repr(value)
        raise argparse.ArgumentTypeError(
            f"unknown speculative type {named} (known: {', '.join(SPECULATIVE_TYPES)})"
        )
    return names


def make_params(xllamacpp: Any, args: argparse.Namespace) -> Any:
    """``xllamacpp.CommonParams`` for the parsed command line."""
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    if args.alias:
        params.model_alias = set(args.alias)
    params.ui = False
    for _flags, (attribute, _kind) in VALUE_FLAGS.items():
        value = getattr(args, attribute)
        if value is not None:
            setattr(params, attribute, value)
    for name, value in vars(args).items():
        if name.startswith("switch_") and value is not None:
            setattr(params, value[0], value[1])
    if args.threads is not None:
        params.cpuparams.n_threads = args.threads
    if args.threads_batch is not None:
        params.cpuparams_batch.n_threads = args.threads_batch
    if args.seed is not None:
        params.sampling.seed = args.seed
    if args.embeddings:
        params.embedding = True
    if args.reranking:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    if args.pooling is not None:  # e.g. mean for a model whose GGUF names no pooling type
        pooling = f"LLAMA_POOLING_TYPE_{args.pooling.upper()}"
        params.pooling_type = getattr(xllamacpp.llama_pooling_type, pooling)
    _speculative(xllamacpp, params, args)
    return params


def _speculative(xllamacpp: Any, params: Any, args: argparse.Namespace) -> None:
    """Set ``params.speculative`` as llama-server's ``--spec-*`` flags do (untouched without them)."""
    values = {path: getattr(args, "spec_" + "_".join(path)) for path, _kind in SPECULATIVE_FLAGS.values()}
    if args.spec_type is None and all(value is None for value in values.values()):
        return
    speculative = params.speculative
    if args.spec_type is not None:
        kinds = xllamacpp.common_speculative_type
        names = ["none"] if "none" in args.spec_type else args.spec_type
        speculative.types = [
            getattr(kinds, "COMMON_SPECULATIVE_TYPE_" + name.upper().replace("-", "_")) for name in names
        ]
    for path, value in values.items():
        if value is None:
            continue
        target = speculative
        for name in path[:-1]:
            target = getattr(target, name)
        setattr(target, path[-1], value)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server and serve until SIGTERM or SIGINT."""
    args = build_parser().parse_args(argv)
    import xllamacpp

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(make_params(xllamacpp, args))
    except Exception as exc:  # the model failed to load: say why, exit non-zero
        sys.stderr.write(f"xllamacpp prebuilt llama.cpp server failed to start: {exc}\n")
        return 1
    print(f"xllamacpp {xllamacpp.__version__ if hasattr(xllamacpp, '__version__') else ''} listening on "
          f"{server.listening_address}", flush=True)  # fmt: skip
    stop.wait()
    print("xllamacpp prebuilt llama.cpp server: stopping", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
