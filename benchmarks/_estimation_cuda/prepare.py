"""Prepare the folder a device call carries: trimmed llama.cpp source, generator, gguf wheel.

``python benchmarks/_estimation_cuda/prepare.py DEST [--sdist PATH] [--version 0.3.36]``

The llama-cpp-python sdist (77 MB) vendors llama.cpp; of it DEST/llama.cpp keeps what
``cmake --build --target llama-server`` with CUDA needs: no ``.git``, models, docs, tests,
examples, web UI sources or non-CUDA GPU backends (about 20 MB). Beside it go ``device.py`` and
``baseline.cu`` (this folder), ``gguf_models.py`` (a copy of
:mod:`gpustack_core.testing.gguf_models`), the llama.cpp plugin's cmake arguments
(``plugin-cmake-args.json``) and the ``gguf`` wheel the generator imports, so the
device needs nothing installed beyond Python, numpy, nvidia-ml-py and the CUDA toolkit. The
sdist is downloaded with pip unless ``--sdist`` names one. DEST is replaced.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from gpustack_engine_llama_cpp._build import DEFAULT_CMAKE_ARGS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GENERATOR = REPO / "src" / "gpustack_core" / "testing" / "gguf_models.py"
LIMIT_BYTES = 60 * 2**20  # a device call carries at most 64 MiB, the checkout included

#: Top-level folders of llama.cpp a llama-server build does not read.
DROP_TOP = {
    ".git", ".github", ".devops", ".gemini", ".pi", "benches", "ci", "conversion", "docs", "examples",
    "gguf-py", "media", "models", "pocs", "requirements", "skills", "tests",
}  # fmt: skip
#: ggml backends kept (ggml/src/ggml-<name>); the others are only added when enabled.
KEEP_BACKENDS = {"ggml-cpu", "ggml-cuda"}
#: What tools/ui needs when neither npm nor the prebuilt download is used.
KEEP_UI = {"CMakeLists.txt", "sources.cmake", "ui.cpp.in", "ui.h.in"}


def keep(rel: Path) -> bool:
    """Whether ``rel`` (a path inside vendor/llama.cpp) goes to the device."""
    parts = rel.parts
    if not parts:
        return True
    if parts[0] in DROP_TOP or parts[0].endswith((".md", ".py", ".nix", ".sh")) or parts[0] == ".git":
        return False
    if parts[:2] == ("ggml", "src") and len(parts) > 2 and parts[2].startswith("ggml-"):
        is_dir_backend = "." not in parts[2]
        return not is_dir_backend or parts[2] in KEEP_BACKENDS
    if parts[:2] == ("tools", "ui") and len(parts) > 2:
        return parts[2] in KEEP_UI
    return True


def vendored_commit(changelog: str, version: str) -> str | None:
    """The llama.cpp commit the sdist's CHANGELOG names for ``version``."""
    section = re.search(rf"## \[{re.escape(version)}\](.*?)(?:\n## \[|\Z)", changelog, re.S)
    commit = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section.group(1)) if section else None
    return commit.group(1) if commit else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--sdist", type=Path, help="llama_cpp_python-VERSION.tar.gz (default: pip download)")
    ap.add_argument("--version", default="0.3.36", help="llama-cpp-python version (the plugin's default)")
    args = ap.parse_args(argv)
    dest: Path = args.dest.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist
        if sdist is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                 f"llama-cpp-python=={args.version}", "-d", tmp],
                check=True,
            )  # fmt: skip
            sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "wheels").mkdir(parents=True)
        prefix = f"llama_cpp_python-{args.version}/vendor/llama.cpp/"
        changelog = ""
        with tarfile.open(sdist) as tar:
            for member in tar:
                if member.name == f"llama_cpp_python-{args.version}/CHANGELOG.md":
                    extracted = tar.extractfile(member)
                    changelog = extracted.read().decode() if extracted else ""
                if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                    continue
                rel = Path(member.name[len(prefix) :])
                if not keep(rel):
                    continue
                member.name = str(Path("llama.cpp") / rel)
                tar.extract(member, dest, filter="data")
        commit = vendored_commit(changelog, args.version)
        (dest / "llama.cpp" / "VENDORED.json").write_text(
            json.dumps({"llama_cpp_python": args.version, "llama_cpp_commit": commit, "sdist": sdist.name})
        )
    for name in ("device.py", "baseline.cu"):
        shutil.copy2(HERE / name, dest / name)
    shutil.copy2(GENERATOR, dest / "gguf_models.py")
    (dest / "plugin-cmake-args.json").write_text(json.dumps(list(DEFAULT_CMAKE_ARGS)))
    gguf_version = metadata.version("gguf")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"gguf=={gguf_version}",
         "-d", str(dest / "wheels")],
        check=True,
    )  # fmt: skip
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {total / 2**20:.1f} MiB (llama.cpp {commit}, gguf {gguf_version})")
    if total > LIMIT_BYTES:
        raise SystemExit(
            f"{dest} is {total / 2**20:.1f} MiB: over the {LIMIT_BYTES / 2**20:.0f} MiB a call carries"
        )


if __name__ == "__main__":
    main()
