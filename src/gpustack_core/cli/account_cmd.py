"""``gpustack-core login|logout|keys|users|usage|logs``: daily tasks over the REST API, no curl.

``login`` keeps a session token per server in the credentials file (mode 0600, see
:mod:`gpustack_core.cli._credentials`); every ``manage`` command and these use it unless
``--api-key`` / ``$GPUSTACK_CORE_API_KEY`` is given.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from typing import Annotated, Any

import typer

from gpustack_core.cli._common import console, print_json
from gpustack_core.cli._credentials import forget_token, load_token, save_token
from gpustack_core.cli.manage_cmd import _JSON, _KEY, _URL, _call, _table

__all__ = ["register"]


def login(
    username: str = typer.Option("admin", "--username", "-u", help="User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (first line)."
    ),
    server_url: str = _URL,
) -> None:
    """Log in and keep the session token for this server (prompts for the password)."""
    import httpx

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {username} at {server_url}: ")
    try:
        response = httpx.post(
            f"{server_url.rstrip('/')}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        console(stderr=True).print(f"[red]cannot reach {server_url}:[/] {exc}")
        raise typer.Exit(2) from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        console(stderr=True).print(f"[red]login failed ({response.status_code}):[/] {detail}")
        raise typer.Exit(1)
    body = response.json()
    path = save_token(server_url, body["token"], username, body.get("expires_at"))
    typer.echo(
        f"logged in to {server_url} as {username}; token kept in {path} (until {body.get('expires_at')})"
    )


def logout(server_url: str = _URL) -> None:
    """End the session on the server and forget its token."""
    token = load_token(server_url)
    if token is None:
        typer.echo(f"not logged in to {server_url}")
        return
    import httpx

    # forgetting the token locally is what matters; an unreachable server's session expires on its own
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{server_url.rstrip('/')}/api/v1/auth/logout",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )
    forget_token(server_url)
    typer.echo(f"logged out of {server_url}")


# ------------------------------------------------------------------------------------------ keys


def keys_list(
    user_id: Annotated[str | None, typer.Option("--user-id", help="Admins: keys of this user.")] = None,
    server_url: str = _URL,
    api_key: str | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """List API keys (yours; an admin's --user-id for another user's)."""
    params: dict[str, Any] = {"limit": 1000}
    if user_id:
        params["user_id"] = user_id
    page = _call(server_url, api_key, "GET", "/api-keys", params=params)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            k["id"],
            k["name"],
            k["kind"],
            ",".join(k["scopes"]),
            ",".join(k["allowed_models"]) if k["allowed_models"] is not None else "*",
            k["expires_at"] or "-",
            k["last_used_at"] or "-",
        ]
        for k in page["items"]
    ]
    _table("API keys", ["id", "name", "kind", "scopes", "models", "expires (UTC)", "last used (UTC)"], rows)


def keys_create(
    name: str = typer.Argument(..., help="A name to recognise the key by."),
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="inference (default) or management; repeatable.")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model; repeatable.")] = None,
    expires_in_days: Annotated[float | None, typer.Option("--expires-in-days", min=0.001)] = None,
    server_url: str = _URL,
    api_key: str | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Create an API key; the key is printed this once."""
    body: dict[str, Any] = {"name": name, "scopes": scope or ["inference"]}
    if model:
        body["allowed_models"] = model
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    created = _call(server_url, api_key, "POST", "/api-keys", json=body)
    if as_json:
        print_json(created)
        return
    record = created["record"]
    console(stderr=True).print(f"key {record['name']} ({record['id']}); shown this once:")
    typer.echo(created["key"])


def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `keys list`)."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Revoke an API key."""
    _call(server_url, api_key, "DELETE", f"/api-keys/{key_id}")
    typer.echo(f"key {key_id} revoked")


# ----------------------------------------------------------------------------------------- users


def users_list(server_url: str = _URL, api_key: str | None = _KEY, as_json: bool = _JSON) -> None:
    """List users (admins)."""
    page = _call(server_url, api_key, "GET", "/users", params={"limit": 1000})
    if as_json:
        print_json(page)
        return
    rows = [
        [u["id"], u["username"], u["role"], "yes" if u["disabled"] else "no", u["created_at"]]
        for u in page["items"]
    ]
    _table("users", ["id", "username", "role", "disabled", "created (UTC)"], rows)


def _password(password_stdin: bool, prompt: str) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        console(stderr=True).print("[red]the passwords differ[/]")
        raise typer.Exit(1)
    return first


def users_create(
    username: str = typer.Argument(...),
    role: str = typer.Option("user", "--role", help="user or admin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Create a user (admins; prompts for the password, 8 characters or more)."""
    password = _password(password_stdin, f"password for {username}: ")
    created = _call(
        server_url, api_key, "POST", "/users", json={"username": username, "password": password, "role": role}
    )
    typer.echo(f"user {created['username']} ({created['role']}) created: {created['id']}")


def _user_id(server_url: str, api_key: str | None, username: str) -> str:
    page = _call(server_url, api_key, "GET", "/users", params={"limit": 1000})
    for user in page["items"]:
        if user["username"] == username or user["id"] == username:
            return str(user["id"])
    console(stderr=True).print(f"[red]no user {username!r}[/]")
    raise typer.Exit(1)


def users_update(
    username: str = typer.Argument(..., help="User name or id."),
    role: Annotated[str | None, typer.Option("--role", help="user or admin.")] = None,
    disable: Annotated[bool | None, typer.Option("--disable/--enable", help="Disable or enable.")] = None,
    password: bool = typer.Option(False, "--password", help="Set a new password (prompted)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """Change a user's role, password, or disable/enable them (admins)."""
    body: dict[str, Any] = {}
    if role is not None:
        body["role"] = role
    if disable is not None:
        body["disabled"] = disable
    if password or password_stdin:
        body["password"] = _password(password_stdin, f"new password for {username}: ")
    if not body:
        console(stderr=True).print("[red]nothing to change:[/] give --role, --disable/--enable or --password")
        raise typer.Exit(2)
    user_id = _user_id(server_url, api_key, username)
    updated = _call(server_url, api_key, "PATCH", f"/users/{user_id}", json=body)
    state = "disabled" if updated["disabled"] else "enabled"
    typer.echo(f"user {updated['username']}: {updated['role']}, {state}")


def users_delete(
    username: str = typer.Argument(...), server_url: str = _URL, api_key: str | None = _KEY
) -> None:
    """Delete a user (admins)."""
    _call(server_url, api_key, "DELETE", f"/users/{_user_id(server_url, api_key, username)}")
    typer.echo(f"user {username} deleted")


# ----------------------------------------------------------------------------------- usage, logs


def usage(
    model: Annotated[str | None, typer.Option("--model")] = None,
    since: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Admins: this user.")] = None,
    server_url: str = _URL,
    api_key: str | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Token usage per day, model, user and key (yours; an admin's for everyone)."""
    params: dict[str, Any] = {"limit": 1000}
    for key, value in (("model", model), ("from", since), ("to", until), ("user_id", user_id)):
        if value:
            params[key] = value
    page = _call(server_url, api_key, "GET", "/usage", params=params)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            r["day"],
            r["model"],
            r["user_id"],
            r["key_id"] or "-",
            str(r["requests"]),
            str(r["prompt_tokens"]),
            str(r["completion_tokens"]),
        ]
        for r in page["items"]
    ]
    _table("usage", ["day", "model", "user", "key", "requests", "prompt tokens", "completion tokens"], rows)


def logs(
    instance: str = typer.Argument(
        ..., help="Instance id, or a deployment name (its replica 0, or --replica)."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines."),
    tail: Annotated[int | None, typer.Option("--tail", "-n", min=0, help="Only the last N lines.")] = None,
    replica: int = typer.Option(0, "--replica", min=0, help="With a deployment name: which replica."),
    server_url: str = _URL,
    api_key: str | None = _KEY,
) -> None:
    """An instance's engine log, streamed from its worker through the server."""
    import httpx

    token = api_key or load_token(server_url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    instance_id = instance
    try:  # a deployment name: its replica's instance; else the argument is an instance id
        found = httpx.get(
            f"{server_url.rstrip('/')}/api/v1/instances",
            params={"deployment": instance, "limit": 1000},
            headers=headers,
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        console(stderr=True).print(f"[red]cannot reach {server_url}:[/] {exc}")
        raise typer.Exit(2) from exc
    if found.status_code == 200:
        for item in found.json()["items"]:
            if item["replica"] == replica:
                instance_id = item["id"]
    params: dict[str, Any] = {"follow": "true" if follow else "false"}
    if tail is not None:
        params["tail"] = tail
    url = f"{server_url.rstrip('/')}/api/v1/instances/{instance_id}/logs"
    try:
        with httpx.stream(
            "GET", url, params=params, headers=headers, timeout=httpx.Timeout(30.0, read=None)
        ) as r:
            if r.status_code >= 400:
                r.read()
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = r.text
                console(stderr=True).print(
                    f"[red]GET logs of {instance} failed ({r.status_code}):[/] {detail}"
                )
                raise typer.Exit(1)
            for chunk in r.iter_text():
                sys.stdout.write(chunk)
                sys.stdout.flush()
    except httpx.HTTPError as exc:
        console(stderr=True).print(f"[red]log stream from {server_url} ended:[/] {exc}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    """Add ``login``, ``logout``, ``keys``, ``users``, ``usage`` and ``logs``."""
    app.command("login")(login)
    app.command("logout")(logout)
    keys = typer.Typer(name="keys", help="API keys: list, create, revoke.", no_args_is_help=True)
    keys.command("list")(keys_list)
    keys.command("create")(keys_create)
    keys.command("revoke")(keys_revoke)
    app.add_typer(keys, name="keys")
    users = typer.Typer(
        name="users", help="Users (admins): list, create, update, delete.", no_args_is_help=True
    )
    users.command("list")(users_list)
    users.command("create")(users_create)
    users.command("update")(users_update)
    users.command("delete")(users_delete)
    app.add_typer(users, name="users")
    app.command("usage")(usage)
    app.command("logs")(logs)
