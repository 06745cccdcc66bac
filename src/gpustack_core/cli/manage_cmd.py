"""``gpustack-core manage ...``: operator conveniences over the server's REST API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gpustack_core.cli._common import console, print_json
from gpustack_core.cli._credentials import load_token

__all__ = ["register"]

_URL = typer.Option(
    "http://127.0.0.1:8080", "--server-url", envvar="GPUSTACK_CORE_SERVER_URL", help="Server base URL."
)
_KEY = typer.Option(
    None,
    "--api-key",
    envvar="GPUSTACK_CORE_API_KEY",
    help="API key with the management scope (default: the token `gpustack-core login` kept).",
)
_JSON = typer.Option(False, "--json", help="Print JSON.")


def _call(
    server_url: str, api_key: str | None, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any
) -> Any:
    """The API's JSON answer; exits 2 when the server cannot be reached or nobody is logged in, and 1
    on an error answer (None for a 404 when ``missing_ok``)."""
    import httpx  # here, not at the top: every other command should start fast

    api_key = api_key or load_token(server_url)
    if not api_key:
        console(stderr=True).print(
            f"[red]not logged in to {server_url}:[/] run `gpustack-core login` (or pass --api-key / "
            "set GPUSTACK_CORE_API_KEY)"
        )
        raise typer.Exit(2)
    try:
        response = httpx.request(
            method,
            f"{server_url.rstrip('/')}/api/v1{path}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30.0,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        console(stderr=True).print(f"[red]cannot reach {server_url}:[/] {exc}")
        raise typer.Exit(2) from exc
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        console(stderr=True).print(f"[red]{method} {path} failed ({response.status_code}):[/] {detail}")
        raise typer.Exit(1)
    return None if response.status_code == 204 else response.json()


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console().print(table)


def workers(server_url: str = _URL, api_key: str | None = _KEY, as_json: bool = _JSON) -> None:
    """List workers."""
    page = _call(server_url, api_key, "GET", "/workers", params={"limit": 1000})
    if as_json:
        print_json(page)
        return
    rows = [
        [
            w["name"],
            w["state"],
            w["address"],
            str(len(w["info"]["devices"])),
            ", ".join(w["info"]["engines"]),
            w["last_heartbeat_at"],
        ]
        for w in page["items"]
    ]
    _table("workers", ["name", "state", "address", "devices", "engines", "last heartbeat (UTC)"], rows)


def devices(server_url: str = _URL, api_key: str | None = _KEY, as_json: bool = _JSON) -> None:
    """List devices of every worker."""
    page = _call(server_url, api_key, "GET", "/devices", params={"limit": 1000})
    if as_json:
        print_json(page)
        return
    rows = []
    for item in page["items"]:
        d = item["device"]
        used = d.get("memory_used_bytes")
        memory = f"{(used or 0) / 2**30:.1f} / {d['memory_total_bytes'] / 2**30:.1f} GiB"
        rows.append([item["worker"], f"{d['accelerator']}:{d['index']}", d["name"], d["vendor"], memory])
    _table("devices", ["worker", "device", "name", "vendor", "memory used / total"], rows)


def deployments(server_url: str = _URL, api_key: str | None = _KEY, as_json: bool = _JSON) -> None:
    """List deployments with the states of their instances."""
    page = _call(server_url, api_key, "GET", "/deployments", params={"limit": 1000})
    instances = _call(server_url, api_key, "GET", "/instances", params={"limit": 1000})
    if as_json:
        print_json({"deployments": page, "instances": instances})
        return
    by_dep: dict[str, list[str]] = {}
    for inst in instances["items"]:
        by_dep.setdefault(inst["deployment"], []).append(
            f"{inst['replica']}:{inst['state']}@{inst['worker'] or '-'}"
        )
    rows = [
        [
            d["name"],
            str(d["spec"]["model"]["source"]) + ":" + d["spec"]["model"]["id"],
            d["spec"]["engine"],
            str(d["replicas"]),
            " ".join(by_dep.get(d["name"], [])) or "-",
        ]
        for d in page["items"]
    ]
    _table("deployments", ["name", "model", "engine", "replicas", "instances"], rows)


def instances(
    deployment: str = typer.Argument(..., help="Deployment name."),
    wait: bool = typer.Option(
        False, "--wait", help="Follow the states until every replica runs (exit 0) or one fails (exit 1)."
    ),
    timeout: float = typer.Option(900.0, "--timeout", min=1, help="With --wait: seconds before giving up."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Show a deployment's instances with messages, progress and scheduler explanations."""
    params = {"deployment": deployment, "limit": 1000}
    page = _call(server_url, api_key, "GET", "/instances", params=params)
    if as_json and not wait:
        print_json(page)
        return
    if not wait:
        _print_instances(page["items"])
        return
    import time

    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while True:
        items = page["items"]
        lines = _instance_lines(items)
        if lines != shown:
            _print_instances(items)
            shown = lines
        if items and all(i["state"] == "running" for i in items):
            return
        if any(i["state"] == "error" for i in items):
            raise typer.Exit(1)
        if time.monotonic() > deadline:
            console(stderr=True).print(f"[red]not running after {timeout:.0f} s[/]")
            raise typer.Exit(1)
        time.sleep(1.0)
        page = _call(server_url, api_key, "GET", "/instances", params=params)


def _instance_lines(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for inst in items:
        where = f" on {inst['worker']}" if inst["worker"] else ""
        port = f" port {inst['port']}" if inst["port"] else ""
        lines.append(f"replica {inst['replica']}: {inst['state']}{where}{port}  {inst['message']}")
        lines += [f"    {line}" for line in _progress_lines(inst.get("progress"))]
        explanation = inst.get("explanation") or {}
        for rejection in explanation.get("rejections", [])[:10]:
            lines.append(f"    {rejection.get('candidate')}: {rejection.get('reason')}")
    return lines


def _print_instances(items: list[dict[str, Any]]) -> None:
    out = console()
    for line in _instance_lines(items):
        out.print(line, markup=False, highlight=False)


def _progress_lines(progress: dict[str, Any] | None) -> list[str]:
    """A download's bytes, percent and ETA, or an install's phase and last log lines."""
    if not progress:
        return []
    if "downloaded_bytes" in progress:
        done, total = progress["downloaded_bytes"], progress.get("total_bytes")
        line = f"downloaded {done / 2**20:.1f}" + (f" / {total / 2**20:.1f} MiB" if total else " MiB")
        if progress.get("percent") is not None:
            line += f" ({progress['percent']:.1f}%)"
        if progress.get("bytes_per_second"):
            line += f", {progress['bytes_per_second'] / 2**20:.1f} MiB/s"
        if progress.get("eta_seconds") is not None:
            line += f", ETA {progress['eta_seconds']:.0f} s"
        return [line]
    lines = [f"phase: {progress.get('phase', '?')}"]
    lines += [f"| {line}" for line in progress.get("log_tail", [])]
    return lines


def deploy(
    name: str = typer.Argument(..., help="Deployment name."),
    model: str = typer.Argument(..., help="SOURCE:ID[@REVISION][#SELECTOR], e.g. local:/models/tiny.gguf"),
    engine: str = typer.Option("llama.cpp", "--engine", help="Engine plugin name."),
    replicas: int = typer.Option(1, "--replicas", min=0),
    arg: Annotated[list[str] | None, typer.Option("--arg", help="Extra engine argument, repeatable.")] = None,
    category: Annotated[
        str | None,
        typer.Option(
            "--category",
            help="llm, embedding, rerank, ... (default: detected from the model: GGUF pooling type or "
            "architecture, config.json).",
        ),
    ] = None,
    engine_version: Annotated[
        str | None,
        typer.Option("--engine-version", help="Pinned engine version (default: the engine's choice)."),
    ] = None,
    context_length: Annotated[int | None, typer.Option("--context-length", min=1)] = None,
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Create a deployment."""
    body: dict[str, Any] = {
        "name": name,
        "model": model,
        "engine": engine,
        "replicas": replicas,
        "extra_args": arg or [],
    }
    for key, value in (
        ("category", category),
        ("engine_version", engine_version),
        ("context_length", context_length),
    ):
        if value is not None:
            body[key] = value
    created = _call(server_url, api_key, "POST", "/deployments", json=body)
    typer.echo(
        f"deployment {created['name']} created ({created['spec']['category']}, "
        f"{created['replicas']} replica(s)); "
        f"watch it with: gpustack-core manage instances {created['name']}"
    )


def scale(
    name: str = typer.Argument(...),
    replicas: int = typer.Argument(..., min=0),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Set a deployment's replica count."""
    updated = _call(server_url, api_key, "POST", f"/deployments/{name}/scale", json={"replicas": replicas})
    typer.echo(f"deployment {updated['name']} scaled to {updated['replicas']}")


def delete(
    name: str = typer.Argument(...),
    wait: bool = typer.Option(
        False, "--wait", help="Return once its instances are stopped and the deployment is gone."
    ),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="With --wait: seconds before giving up."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Delete a deployment (its instances are stopped)."""
    _call(server_url, api_key, "DELETE", f"/deployments/{name}")
    if not wait:
        typer.echo(f"deployment {name} is being deleted; its instances are stopping")
        return
    import time

    deadline = time.monotonic() + timeout
    # the server removes the deployment once its workers have stopped every instance
    while _call(server_url, api_key, "GET", f"/deployments/{name}", missing_ok=True) is not None:
        if time.monotonic() > deadline:
            console(stderr=True).print(f"[red]deployment {name} still stopping after {timeout:.0f} s[/]")
            raise typer.Exit(1)
        time.sleep(0.5)
    typer.echo(f"deployment {name} deleted; its instances are stopped")


def register(app: typer.Typer) -> None:
    """Add the ``manage`` command group."""
    group = typer.Typer(
        name="manage", help="Operate a running server over its REST API.", no_args_is_help=True
    )
    for command in (workers, devices, deployments, instances, deploy, scale, delete):
        group.command(command.__name__)(command)
    from gpustack_core.cli.governance_cmd import add_to  # imports this module: not at the top

    add_to(group)
    app.add_typer(group, name="manage")
