"""Fuzz the management API with schemathesis against its own OpenAPI document (``nox -s fuzz``).

Starts ``gpustack-core serve --no-worker`` on a free loopback port in a temporary data directory,
then runs ``schemathesis run`` four times, bounded in time: as the admin (an API key with the
management scope), as a plain user, unauthenticated, and with the worker join token. Every run
checks that no answer is a server error and that every answer conforms to the document (status
code, content type, headers, body schema). Exit status 0 only when all four runs pass.

Usage: python scripts/fuzz_api.py [--max-time SECONDS] [--max-examples N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
#: Operations that end the credential the run uses (logout; deleting the caller's own key, which
#: stateful testing finds through ``GET /auth/me``; ending the cookie session, which revokes the
#: session token just like logout; changing one's own password, after which the password this
#: script logs in with for the next runs no longer works): left out of the four runs, fuzzed in a
#: last one with a throwaway key. Otherwise the credential ends mid-run and every later operation
#: answers only 401/403 (schemathesis: "Authentication failed").
ENDS_CREDENTIAL = ("logout", "delete_key", "delete_session", "change_password")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _call(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was ready")
        try:
            _call(base, "GET", "/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:g} s")


def _admin_login(base: str, data_dir: Path) -> str:
    """A session of the initial admin; waits out the login limiter once (``Retry-After``)."""
    password = (data_dir / "initial_admin_password").read_text().strip()
    body = {"username": "admin", "password": password}
    try:
        token: str = _call(base, "POST", "/api/v1/auth/login", body=body)["token"]
    except urllib.error.HTTPError as exc:
        if exc.code != 429:
            raise
        wait = int(exc.headers.get("Retry-After", "1"))
        print(f"admin login rate limited by the fuzzer's failed logins; waiting {wait} s", flush=True)
        time.sleep(wait)
        token = _call(base, "POST", "/api/v1/auth/login", body=body)["token"]
    return token


def _setup_token(base: str, data_dir: Path, setup: dict[str, str]) -> str:
    """The admin key this script sets runs up with, made before any fuzzing.

    Fuzzing sends failing logins, some as ``admin``: the login limiter then refuses the admin's
    password for minutes (429), so the script logs in only when this key is gone (a run may delete it).
    """
    token = setup.get("token")
    if token is not None and _still_valid(base, token):
        return token
    admin = _admin_login(base, data_dir)
    body = {"name": "fuzz-setup", "scopes": ["management", "inference"]}
    key: str = _call(base, "POST", "/api/v1/api-keys", admin, body)["key"]
    setup["token"] = key
    return key


def _credential(base: str, data_dir: Path, name: str, run: int, setup: dict[str, str]) -> str | None:
    """A fresh credential for one run (an earlier run may have deleted or disabled the last one)."""
    if name == "unauthenticated":
        return None
    if name == "worker":
        return (data_dir / "token").read_text().strip()
    admin = _setup_token(base, data_dir, setup)
    if name == "admin":
        body = {"name": f"fuzz-admin-{run}", "scopes": ["management", "inference"]}
        key: str = _call(base, "POST", "/api/v1/api-keys", admin, body)["key"]
        return key
    user = {"username": f"fuzz-user-{run}", "password": "tangerine-kettle-47", "role": "user"}
    _call(base, "POST", "/api/v1/users", admin, user)
    login = {"username": user["username"], "password": user["password"]}
    token: str = _call(base, "POST", "/api/v1/auth/login", body=login)["token"]
    return token


def _still_valid(base: str, token: str | None) -> bool:
    try:
        _call(base, "GET", "/api/v1/auth/me", token)
    except OSError:
        return False
    return True


def _schemathesis(
    base: str, name: str, token: str | None, args: argparse.Namespace, report: Path, only_ending: bool = False
) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/api/v1/openapi.json",
        "--url",
        base,
        "--checks",
        CHECKS,
        "--max-time",
        str(args.max_time),
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        str(report / f"{name}.xml"),
    ]
    option = "--include-operation-id" if only_ending else "--exclude-operation-id"
    for operation in ENDS_CREDENTIAL:
        command += [option, operation]
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    print(f"\n=== schemathesis as {name} ===", flush=True)
    # run in the temporary directory: schemathesis keeps a cache in its working directory
    return subprocess.run(command, timeout=args.max_time * 4 + 120, check=False, cwd=report).returncode


def main(argv: list[str] | None = None) -> int:
    """Run the four fuzzing passes; 0 when all pass."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-time", type=int, default=40, help="seconds per credential (default 40)")
    parser.add_argument("--max-examples", type=int, default=50, help="cases per operation (default 50)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--report-dir", type=Path, default=None, help="keep JUnit reports here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gpustack-fuzz-"))
    report = args.report_dir or tmp / "reports"
    report.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GPUSTACK_CORE_DATA_DIR": str(tmp / "data")}
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gpustack_core.cli", "serve", "--no-worker", "--port", str(port),
         "--data-dir", str(tmp / "data"), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    failed: list[str] = []
    try:
        _wait_ready(base, server)
        setup: dict[str, str] = {}
        _setup_token(base, tmp / "data", setup)
        for run, name in enumerate(("admin", "user", "unauthenticated", "worker")):
            token = _credential(base, tmp / "data", name, run, setup)
            if _schemathesis(base, name, token, args, report) != 0:
                failed.append(name)
            if name in {"admin", "user"} and not _still_valid(base, token):
                print(f"the {name} credential stopped working during the run", file=sys.stderr)
                failed.append(f"{name} (credential lost)")
        admin = _credential(base, tmp / "data", "admin", 99, setup)
        if _schemathesis(base, "admin-ending-its-credential", admin, args, report, only_ending=True) != 0:
            failed.append("admin-ending-its-credential")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    server_log = (tmp / "server.log").read_text(errors="replace")
    if "Traceback" in server_log:
        print("\nthe server logged tracebacks:\n" + server_log[-5000:], file=sys.stderr)
        failed.append("server log")
    if args.report_dir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"\nfuzzing failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\nfuzzing passed for admin, user, unauthenticated and worker credentials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
