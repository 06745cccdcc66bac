"""``gpustack-core manage ...``: operator conveniences over the server's REST API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gpustack_core.cli._common import console, print_json

__all__ = ["register"]

_URL = typer.Option(
    "http://127.0.0.1:8080", "--server-url", envvar="GPUSTACK_CORE_SERVER_URL", help="Server base URL."
)
_KEY = typer.Option(
    ...,
    "--api-key",
    envvar="GPUSTACK_CORE_API_KEY",
    help="API key with the management scope (or a login token).",
)
_JSON = typer.Option(False, "--json", help="Print JSON.")


def _call(server_url: str, api_key: str, method: str, path: str, **kwargs: Any) -> Any:
    import httpx  # here, not at the top: every other command should start fast

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


def workers(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
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


def devices(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
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


def deployments(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
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
    server_url: str = _URL,
    api_key: str = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Show a deployment's instances with messages and scheduler explanations."""
    page = _call(server_url, api_key, "GET", "/instances", params={"deployment": deployment, "limit": 1000})
    if as_json:
        print_json(page)
        return
    out = console()
    for inst in page["items"]:
        where = f" on {inst['worker']}" if inst["worker"] else ""
        port = f" port {inst['port']}" if inst["port"] else ""
        out.print(f"replica {inst['replica']}: [bold]{inst['state']}[/]{where}{port}  {inst['message']}")
        explanation = inst.get("explanation") or {}
        for rejection in explanation.get("rejections", [])[:10]:
            out.print(f"    {rejection.get('candidate')}: {rejection.get('reason')}")


def deploy(
    name: str = typer.Argument(..., help="Deployment name."),
    model: str = typer.Argument(..., help="SOURCE:ID[@REVISION][#SELECTOR], e.g. local:/models/tiny.gguf"),
    engine: str = typer.Option("llama.cpp", "--engine", help="Engine plugin name."),
    replicas: int = typer.Option(1, "--replicas", min=0),
    arg: Annotated[list[str] | None, typer.Option("--arg", help="Extra engine argument, repeatable.")] = None,
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Create a deployment."""
    body = {"name": name, "model": model, "engine": engine, "replicas": replicas, "extra_args": arg or []}
    created = _call(server_url, api_key, "POST", "/deployments", json=body)
    typer.echo(
        f"deployment {created['name']} created ({created['replicas']} replica(s)); "
        f"watch it with: gpustack-core manage instances {created['name']}"
    )


def scale(
    name: str = typer.Argument(...),
    replicas: int = typer.Argument(..., min=0),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Set a deployment's replica count."""
    updated = _call(server_url, api_key, "POST", f"/deployments/{name}/scale", json={"replicas": replicas})
    typer.echo(f"deployment {updated['name']} scaled to {updated['replicas']}")


def delete(name: str = typer.Argument(...), server_url: str = _URL, api_key: str = _KEY) -> None:
    """Delete a deployment (its instances are stopped)."""
    _call(server_url, api_key, "DELETE", f"/deployments/{name}")
    typer.echo(f"deployment {name} is being deleted; its instances are stopping")


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
