"""``gpustack-core manage teams|access|limits|fallbacks|usage``: governance over the REST API.

Users are named by username or id, teams by name or id.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpustack_core.cli._common import print_json
from gpustack_core.cli.manage_cmd import _JSON, _KEY, _URL, _call, _table

__all__ = ["add_to"]


def _user_id(server_url: str, api_key: str, ref: str) -> str:
    users = _call(server_url, api_key, "GET", "/users", params={"limit": 1000})["items"]
    for user in users:
        if ref in (user["id"], user["username"]):
            return str(user["id"])
    raise typer.BadParameter(f"no user named {ref!r}; see GET /api/v1/users")


def _subject(server_url: str, api_key: str, kind: str, ref: str) -> str:
    if kind == "user":
        return _user_id(server_url, api_key, ref)
    if kind == "team":
        return str(_call(server_url, api_key, "GET", f"/teams/{ref}")["id"])
    return ref


# ------------------------------------------------------------------ teams


def teams_list(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
    """List teams with their members."""
    page = _call(server_url, api_key, "GET", "/teams")
    if as_json:
        print_json(page)
        return
    users = {
        u["id"]: u["username"]
        for u in _call(server_url, api_key, "GET", "/users", params={"limit": 1000})["items"]
    }
    rows = [
        [t["name"], t["id"], ", ".join(users.get(m, m) for m in t["members"]) or "-"] for t in page["items"]
    ]
    _table("teams", ["name", "id", "members"], rows)


def teams_create(
    name: str = typer.Argument(...),
    description: str = typer.Option("", "--description"),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Create a team."""
    team = _call(server_url, api_key, "POST", "/teams", json={"name": name, "description": description})
    typer.echo(f"team {team['name']} created ({team['id']})")


def teams_delete(team: str = typer.Argument(...), server_url: str = _URL, api_key: str = _KEY) -> None:
    """Delete a team with its memberships, access rules and limits."""
    _call(server_url, api_key, "DELETE", f"/teams/{team}")
    typer.echo(f"team {team} deleted")


def teams_add(
    team: str = typer.Argument(...),
    user: str = typer.Argument(...),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Put a user into a team."""
    _call(server_url, api_key, "PUT", f"/teams/{team}/members/{_user_id(server_url, api_key, user)}")
    typer.echo(f"{user} is in team {team}")


def teams_remove(
    team: str = typer.Argument(...),
    user: str = typer.Argument(...),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Take a user out of a team."""
    _call(server_url, api_key, "DELETE", f"/teams/{team}/members/{_user_id(server_url, api_key, user)}")
    typer.echo(f"{user} left team {team}")


# ------------------------------------------------------------------ model access

_KIND = typer.Argument(..., help="user or team")


def access_list(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
    """List access rules (no rule on a user or their teams: every model)."""
    page = _call(server_url, api_key, "GET", "/model-access")
    if as_json:
        print_json(page)
        return
    _table(
        "model access",
        ["kind", "subject", "model"],
        [[r["subject_kind"], r["subject_id"], r["model"]] for r in page["items"]],
    )


def access_grant(
    kind: str = _KIND,
    subject: str = typer.Argument(..., help="username, team name or id"),
    model: str = typer.Argument(..., help="model name, or * for every model"),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Allow a user or team to call a model."""
    body = {"subject_kind": kind, "subject_id": _subject(server_url, api_key, kind, subject), "model": model}
    _call(server_url, api_key, "POST", "/model-access", json=body)
    typer.echo(f"{kind} {subject} may call {model}")


def access_revoke(
    kind: str = _KIND,
    subject: str = typer.Argument(...),
    model: str = typer.Argument(...),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Remove an access rule."""
    params = {
        "subject_kind": kind,
        "subject_id": _subject(server_url, api_key, kind, subject),
        "model": model,
    }
    _call(server_url, api_key, "DELETE", "/model-access", params=params)
    typer.echo(f"removed: {kind} {subject} may call {model}")


# ------------------------------------------------------------------ limits


def limits_list(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
    """List limits."""
    page = _call(server_url, api_key, "GET", "/limits")
    if as_json:
        print_json(page)
        return
    rows = [
        [
            x["id"],
            x["subject_kind"],
            x["subject_id"] or "-",
            x["model"] or "*",
            f"{x['max_value']} {x['metric']}/{x['period']}",
        ]
        for x in page["items"]
    ]
    _table("limits", ["id", "kind", "subject", "model", "limit"], rows)


def limits_set(
    kind: str = typer.Argument(..., help="user, team, key or global"),
    subject: str = typer.Argument("", help="username, team name, key id ('' for global)"),
    metric: str = typer.Option(..., "--metric", help="tokens or requests"),
    period: str = typer.Option(..., "--period", help="minute, hour, day, month or total"),
    max_value: int = typer.Option(..., "--max", min=0),
    model: str = typer.Option("", "--model", help="only this model (default: every model)"),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Set a quota (tokens per day/month/total) or rate limit (requests or tokens per minute)."""
    body: dict[str, Any] = {
        "subject_kind": kind,
        "subject_id": _subject(server_url, api_key, kind, subject) if subject else "",
        "model": model,
        "metric": metric,
        "period": period,
        "max_value": max_value,
    }
    record = _call(server_url, api_key, "PUT", "/limits", json=body)
    typer.echo(f"limit {record['id']}: {record['max_value']} {record['metric']} per {record['period']}")


def limits_delete(limit_id: str = typer.Argument(...), server_url: str = _URL, api_key: str = _KEY) -> None:
    """Delete a limit."""
    _call(server_url, api_key, "DELETE", f"/limits/{limit_id}")
    typer.echo(f"limit {limit_id} deleted")


# ------------------------------------------------------------------ fallbacks and usage


def fallbacks_list(server_url: str = _URL, api_key: str = _KEY, as_json: bool = _JSON) -> None:
    """List fallback chains."""
    page = _call(server_url, api_key, "GET", "/fallbacks")
    if as_json:
        print_json(page)
        return
    _table(
        "fallbacks",
        ["model", "fallbacks"],
        [[c["model"], " -> ".join(c["fallbacks"])] for c in page["items"]],
    )


def fallbacks_set(
    model: str = typer.Argument(...),
    chain: Annotated[
        list[str] | None, typer.Argument(help="fallback models in order; none removes the chain")
    ] = None,
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Set a model's fallback chain."""
    _call(server_url, api_key, "PUT", f"/fallbacks/{model}", json={"fallbacks": chain or []})
    typer.echo(f"{model} falls back to: {' -> '.join(chain or []) or 'nothing'}")


def scale_to_zero(
    deployment: str = typer.Argument(...),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", help="seconds without requests", min=0.001
    ),
    wake_replicas: int = typer.Option(1, "--wake-replicas", min=1),
    off: bool = typer.Option(False, "--off", help="remove the policy"),
    server_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Let a deployment stop when idle and start on the next request (held while it starts)."""
    if not off and idle_timeout is None:
        raise typer.BadParameter("give --idle-timeout SECONDS, or --off")
    body = {"idle_timeout_s": None if off else idle_timeout, "wake_replicas": wake_replicas}
    _call(server_url, api_key, "PUT", f"/scale-to-zero/{deployment}", json=body)
    typer.echo(f"{deployment}: " + ("no scale to zero" if off else f"stops after {idle_timeout:g} s idle"))


def usage(
    bucket: str = typer.Option("day", "--bucket", help="hour or day"),
    group_by: str = typer.Option("model", "--group-by", help="comma-separated: model, user, key, team"),
    date_from: str | None = typer.Option(None, "--from", help="first day YYYY-MM-DD"),
    date_to: str | None = typer.Option(None, "--to", help="last day YYYY-MM-DD"),
    server_url: str = _URL,
    api_key: str = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Token usage in hour or day buckets by model, user, key or team."""
    params = {"bucket": bucket, "group_by": group_by}
    if date_from:
        params["from"] = date_from
    if date_to:
        params["to"] = date_to
    page = _call(server_url, api_key, "GET", "/usage/buckets", params=params)
    if as_json:
        print_json(page)
        return
    fields = [g for g in group_by.split(",") if g]
    column = {"model": "model", "user": "user_id", "key": "key_id", "team": "team_id"}
    rows = [
        [
            b["start"],
            *(str(b[column[f]] or "-") for f in fields),
            str(b["requests"]),
            str(b["prompt_tokens"]),
            str(b["completion_tokens"]),
        ]
        for b in page["items"]
    ]
    _table(f"usage per {bucket}", ["start (UTC)", *fields, "requests", "prompt", "completion"], rows)


_GROUPS: dict[str, str] = {
    "teams": "Teams and their members.",
    "access": "Which models users and teams may call.",
    "limits": "Token quotas and request/token rate limits.",
    "fallbacks": "Models tried when a model cannot answer.",
}

_COMMANDS: tuple[tuple[str, str, Any], ...] = (
    ("teams", "list", teams_list),
    ("teams", "create", teams_create),
    ("teams", "delete", teams_delete),
    ("teams", "add-member", teams_add),
    ("teams", "remove-member", teams_remove),
    ("access", "list", access_list),
    ("access", "grant", access_grant),
    ("access", "revoke", access_revoke),
    ("limits", "list", limits_list),
    ("limits", "set", limits_set),
    ("limits", "delete", limits_delete),
    ("fallbacks", "list", fallbacks_list),
    ("fallbacks", "set", fallbacks_set),
)


def add_to(group: typer.Typer) -> None:
    """Add the governance command groups and ``usage`` to the ``manage`` group (fresh objects each call)."""
    subs = {name: typer.Typer(name=name, help=text, no_args_is_help=True) for name, text in _GROUPS.items()}
    for sub_name, command_name, function in _COMMANDS:
        subs[sub_name].command(command_name)(function)
    for sub in subs.values():
        group.add_typer(sub)
    group.command("scale-to-zero")(scale_to_zero)
    group.command("usage")(usage)
