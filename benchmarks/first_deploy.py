"""First deploy benchmark: a new user's wait, from ``gpustack-core serve`` to an instance ``running``.

``python -m benchmarks first_deploy [-- --runs 1 --cases downloaded,cached,installed]``

Each run: a fresh HOME and data directory, the tiny GGUF already local, the real CLI
(``gpustack-core serve`` as a process; ``login --password-stdin``, ``manage deploy``) and polling of
``GET /api/v1/instances`` every 0.25 s, which records when each state was first seen. Cases:

- ``downloaded``: fresh engines directory and an empty pip cache: the ``xllamacpp`` wheel (~33 MB)
  is downloaded from the package index and installed.
- ``cached``: fresh engines directory, the wheel in a warm pip cache (the first case warms it).
- ``installed``: the prebuilt runtime already installed (a second machine start, a second model).

Columns: seconds from ``serve`` start to listening, to the deploy command's return, spent
``installing``, to ``running`` (the target: 60 s or less on the 2-core development machine), and to
the first chat completion answered through the gateway (greedy, 8 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

__all__ = ["main"]

BIN = Path(sys.executable).parent
CASES = ("downloaded", "cached", "installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(BIN / "gpustack-core"), *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"gpustack-core {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def run_case(case: str, work: Path, model: Path, pip_cache: Path, engines: Path) -> dict[str, Any]:
    """One first deploy; the seconds of each milestone."""
    home = Path(tempfile.mkdtemp(prefix=f"home-{case}-", dir=work))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUSTACK_CORE_", "XDG_", "PIP_"))}
    env.update(HOME=str(home), GPUSTACK_CORE_SERVER_URL=f"http://127.0.0.1:{port}")
    if case == "downloaded":
        env["PIP_CACHE_DIR"] = str(home / ".cache" / "pip")  # empty: the wheel comes from the index
        env["GPUSTACK_CORE_ENGINES_DIR"] = str(home / "engines")
    elif case == "cached":
        env["PIP_CACHE_DIR"] = str(pip_cache)
        env["GPUSTACK_CORE_ENGINES_DIR"] = str(home / "engines")
    else:
        env["PIP_CACHE_DIR"] = str(pip_cache)
        env["GPUSTACK_CORE_ENGINES_DIR"] = str(engines)
    log = (home / "serve.log").open("w")
    t0 = time.monotonic()
    serve = subprocess.Popen(
        [str(BIN / "gpustack-core"), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen: dict[str, float] = {}
    try:
        while "listening on" not in (home / "serve.log").read_text():
            if serve.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError((home / "serve.log").read_text())
            time.sleep(0.05)
        listening = time.monotonic() - t0
        password = (home / ".local" / "share" / "gpustack-core" / "initial_admin_password").read_text()
        _cli(env, "login", "--password-stdin", stdin=password)
        _cli(env, "manage", "deploy", "tiny", f"local:{model}", "--context-length", "512")
        deployed = time.monotonic() - t0
        token = json.loads((home / ".config" / "gpustack-core" / "credentials.json").read_text())
        key = token["servers"][f"http://127.0.0.1:{port}"]["token"]
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                items = client.get("/api/v1/instances", params={"deployment": "tiny"}).json()["items"]
                state = items[0]["state"] if items else "none"
                seen.setdefault(state, time.monotonic() - t0)
                if state == "running":
                    break
                if state == "error" or time.monotonic() - t0 > 900:
                    raise RuntimeError(f"instance {state}: {items[0]['message'] if items else ''}")
                time.sleep(0.25)
            running = time.monotonic() - t0
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": "Count to ten"}],
                "max_tokens": 8,
                "temperature": 0,
            }
            for _ in range(10):  # the gateway's route table follows the database within a moment
                answer = client.post("/v1/chat/completions", json=body)
                if answer.status_code != 503:
                    break
                time.sleep(0.5)
            answer.raise_for_status()
            answered = time.monotonic() - t0
        installing = seen.get("starting", running) - seen["installing"] if "installing" in seen else 0.0
        return {
            "case": case,
            "listening": listening,
            "deployed": deployed,
            "installing": installing,
            "running": running,
            "answered": answered,
        }
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()


def main(argv: list[str]) -> None:
    """Run the cases and print one table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks first_deploy")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; cases: {', '.join(CASES)}")
    work = Path(tempfile.mkdtemp(prefix="first-deploy-"))
    try:
        model = write_llama_gguf(work / "tiny.gguf", TinyLlamaSpec.tiny())
        pip_cache = work / "pip-cache"
        engines = work / "engines"
        if "cached" in cases or "installed" in cases:  # warm the pip cache and install once
            from gpustack_engine_llama_cpp import PREBUILT_DEFAULT_VERSION, LlamaCppEngine

            from gpustack_core.types import EngineOptions

            os.environ["PIP_CACHE_DIR"] = str(pip_cache)
            LlamaCppEngine().install(PREBUILT_DEFAULT_VERSION, EngineOptions(engines_dir=str(engines)))
            del os.environ["PIP_CACHE_DIR"]
        header = ["case", "serve listening", "deploy returned", "installing", "running", "answered"]
        print(f"| {header[0]} | " + " | ".join(f"{h} (s)" for h in header[1:]) + " |")
        print("|---|---|---|---|---|---|")
        for _ in range(args.runs):
            for case in cases:
                r = run_case(case, work, model, pip_cache, engines)
                print(
                    f"| {r['case']} | {r['listening']:.1f} | {r['deployed']:.1f} | {r['installing']:.1f} | "
                    f"{r['running']:.1f} | {r['answered']:.1f} |",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
