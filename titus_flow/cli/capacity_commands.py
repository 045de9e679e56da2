"""``titus-flow capacity-groups ...`` and ``titus-flow apply``: tiers, guarantees and limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
import pydantic
from rich.table import Table

from titus_flow.cli.app import (
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
    stdout_console,
)
from titus_flow.client import TitusClient
from titus_flow.contracts import CapacityGroupView
from titus_flow.errors import UserError, format_validation_error
from titus_flow.loader import load_capacity_groups
from titus_flow.spec import CapacityGroup
from titus_flow.spec.base import Name
from titus_flow.spec.quantities import format_mebibytes, parse_mebibytes

F = TypeVar("F", bound=Callable[..., Any])

_NAME: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(Name)

NONE = "none"
"""An option value that removes the limit or guarantee it sets (``--limit-cpu none``)."""

# Where each option goes in a group spec, what it holds, and its help.
_OPTIONS: dict[str, tuple[str, str, str, str]] = {
    # option: (section, field, kind, help)
    "guarantee_cpu": ("guarantee", "cpu", "cores", "CPU cores kept for the group (e.g. 8)."),
    "guarantee_memory": ("guarantee", "memory", "size", "Memory kept for the group (e.g. 16Gi)."),
    "limit_cpu": ("limit", "cpu", "cores", "Most CPU cores its tasks use together."),
    "limit_memory": ("limit", "memory", "size", "Most memory its tasks use together (e.g. 32Gi)."),
    "limit_tasks": ("limit", "tasks", "count", "Most tasks running at once."),
}


@cli.group("capacity-groups")
def capacity_groups() -> None:
    """Capacity groups: the tier, guarantee and limits jobs draw from (job.capacity_group)."""


def _group_options(command: F) -> F:
    """The options ``create`` and ``update`` share (``none`` removes a value)."""
    for name, (_, _, kind, text) in reversed(_OPTIONS.items()):
        command = click.option(
            _flag(name), name, metavar=kind.upper(), help=f"{text} {NONE} removes it."
        )(command)
    return click.option(
        "--tier",
        type=click.Choice(["critical", "flex"]),
        help="critical: placed first, may hold a guarantee; flex (create's default).",
    )(command)


def _option_value(option: str, text: str) -> Any:
    """An option's value as the spec takes it; ``None`` for ``none``."""
    if text.strip().lower() == NONE:
        return None
    kind, flag = _OPTIONS[option][2], _flag(option)
    try:
        if kind == "size":
            return parse_mebibytes(text)
        return float(text) if kind == "cores" else int(text)
    except ValueError as err:
        if kind == "size":
            problem = str(err)  # names the value and how to write a size
        elif kind == "cores":
            problem = f"invalid number of cores {text!r}: use a number like 2 or 0.5"
        else:
            problem = f"invalid count {text!r}: use a whole number like 10"
        raise UserError(f"{flag}: {problem} (or {NONE} to remove it)") from None


def _parse(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options given, parsed (``None``: remove); checked before the cluster is asked."""
    try:
        _NAME.validate_python(name)
    except pydantic.ValidationError as err:
        raise UserError(f"NAME: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from err
    return {
        option: _option_value(option, text)
        for option, text in options.items()
        if option in _OPTIONS and text is not None
    }


def _flag(option: str) -> str:
    return f"--{option.replace('_', '-')}"


def _cli_error(path: str, message: str, given: set[str]) -> str:
    """A spec error about field ``path`` as one line about the option it came from."""
    for option, (section, field, *_) in _OPTIONS.items():
        message = message.replace(f"{section}.{field}", _flag(option))
    if path == "name":
        return f"NAME: {message}"
    section, _, field = path.partition(".")
    flags = [
        _flag(option)
        for option, (s, f, *_) in _OPTIONS.items()
        if s == section and (f == field or not field)
    ]
    if len(flags) > 1:
        # A whole section is wrong: name the options the user gave, or the one the fix names.
        flags = [f for f in flags if f in given or f in message][:1] or flags
    return f"{'/'.join(flags) or '--' + path}: {message}"


def _build(
    name: str, base: CapacityGroup | None, tier: str | None, values: dict[str, Any]
) -> CapacityGroup:
    """``base`` (or a new group) with the tier and the parsed option ``values`` applied."""
    # Without defaults: a guarantee of 0 memory or a limit of None cpu is just absent.
    raw: dict[str, Any] = (
        base.model_dump(mode="json", exclude_defaults=True) if base else {"name": name}
    )
    if tier is not None:
        raw["tier"] = tier
    for option, value in values.items():
        section, field, *_ = _OPTIONS[option]
        fields = dict(raw.get(section) or {})
        if value is None:
            fields.pop(field, None)
        else:
            fields[field] = value
        raw[section] = fields or None  # nothing left: no guarantee (or limit) at all
    return _validated(raw, {_flag(option) for option in values})


def _validated(raw: dict[str, Any], given: set[str]) -> CapacityGroup:
    """The group ``raw`` describes; errors name the options (``given``: those the user set)."""
    try:
        return CapacityGroup.model_validate(raw)
    except pydantic.ValidationError as err:
        lines = []
        for line in format_validation_error(err, ""):
            path, _, message = line.removeprefix(": ").partition(": ")
            lines.append(_cli_error(path, message, given))
        raise UserError(lines) from err


def _cores(cpu: float) -> str:
    return f"{cpu:g} core" + ("" if cpu == 1 else "s")


def describe_guarantee(group: CapacityGroup) -> str:
    """``"4 cores, 8Gi"``, or ``"-"`` without a guarantee."""
    guarantee = group.guarantee
    if guarantee is None:
        return "-"
    parts = [_cores(guarantee.cpu)] if guarantee.cpu else []
    parts += [format_mebibytes(guarantee.memory)] if guarantee.memory else []
    return ", ".join(parts)


def describe_limit(group: CapacityGroup) -> str:
    """``"8 cores, 16Gi, 10 tasks"``, or ``"-"`` without limits."""
    limit = group.limit
    if limit is None:
        return "-"
    parts = [] if limit.cpu is None else [_cores(limit.cpu)]
    parts += [] if limit.memory is None else [format_mebibytes(limit.memory)]
    parts += [] if limit.tasks is None else [f"{limit.tasks} tasks"]
    return ", ".join(parts) or "-"


def _summary(group: CapacityGroup) -> str:
    return f"{group.tier}, guarantee {describe_guarantee(group)}, limit {describe_limit(group)}"


async def _views(client: TitusClient) -> dict[str, CapacityGroupView]:
    return {view.group.name: view for view in await client.capacity_groups()}


@capacity_groups.command("list")
@output_option
@pass_context
def groups_list(ctx: Context, output: str) -> None:
    """Each group's tier, guarantee and limits, and what its tasks use and wait for."""

    async def go() -> list[CapacityGroupView]:
        return await (await TitusClient.connect(ctx.settings)).capacity_groups()

    views = run_async(go())
    if output == "json":
        echo_json([view.model_dump(mode="json") for view in views])
        return
    table = Table(show_header=True)
    for column in ("group", "tier", "guarantee", "limit", "used", "tasks", "pending"):
        table.add_column(column)
    for view in views:
        group = view.group
        table.add_row(
            group.name + ("" if view.defined else " (implicit)"),
            group.tier,
            describe_guarantee(group),
            describe_limit(group),
            f"{_cores(view.used_cpu)}, {format_mebibytes(view.used_memory)}",
            str(view.tasks),
            str(view.pending),
        )
    stdout_console().print(table)


def _put(
    ctx: Context,
    name: str,
    options: dict[str, Any],
    expect: Literal["new", "existing"],
    output: str,
) -> None:
    """Validate the group from the options (over the current one for update), then put it."""
    # Checked before connecting: a bad option never needs the cluster.
    values, tier = _parse(name, options), options.get("tier")
    new = _build(name, None, tier, values) if expect == "new" else None

    async def go() -> CapacityGroupView:
        client = await TitusClient.connect(ctx.settings)
        if new is not None:
            return await client.put_capacity_group(new, expect)
        current = (await _views(client)).get(name)
        if current is None:
            raise UserError(
                f"no capacity group {name!r}; create it with"
                f" `titus-flow capacity-groups create {name}`"
            )
        return await client.put_capacity_group(_build(name, current.group, tier, values), expect)

    view = run_async(go())
    if output == "json":
        echo_json(view.model_dump(mode="json"))
    else:
        action = "created" if expect == "new" else "updated"
        click.echo(f"capacity group {view.group.name} {action}: {_summary(view.group)}")


@capacity_groups.command("create")
@click.argument("name")
@_group_options
@output_option
@pass_context
def groups_create(ctx: Context, /, name: str, output: str, **options: Any) -> None:
    """Create capacity group NAME; jobs join it with capacity_group: NAME.

    Example: titus-flow capacity-groups create prod --tier critical --guarantee-cpu 8
    --guarantee-memory 16Gi --limit-cpu 16
    """
    _put(ctx, name, options, "new", output)


@capacity_groups.command("update")
@click.argument("name")
@_group_options
@output_option
@pass_context
def groups_update(ctx: Context, /, name: str, output: str, **options: Any) -> None:
    """Change capacity group NAME; options not given keep their value.

    Tasks waiting for capacity are placed again under the new values at once;
    running tasks are not stopped by a lower limit.
    """
    _put(ctx, name, options, "existing", output)


@cli.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
@output_option
@pass_context
def apply(ctx: Context, file: Path, output: str) -> None:
    """Create or replace the capacity groups defined in FILE (.yaml, .json or .py).

    The whole file is validated before anything changes. YAML: a top-level
    capacity_groups: [{name, tier, guarantee: {cpu, memory}, limit: {cpu, memory,
    tasks}}, ...].
    """
    groups = load_capacity_groups(file)

    async def go() -> list[tuple[str, CapacityGroup]]:
        client = await TitusClient.connect(ctx.settings)
        # Reading first also checks the scheduler answers before the first change.
        current = await _views(client)
        done = []
        for group in groups:
            before = current.get(group.name)
            if before is not None and before.defined and before.group == group:
                done.append(("unchanged", group))
                continue
            await client.put_capacity_group(group)
            done.append(("updated" if before and before.defined else "created", group))
        return done

    done = run_async(go())
    if output == "json":
        echo_json([{"name": g.name, "action": action} for action, g in done])
        return
    for action, group in done:
        click.echo(f"capacity group {group.name} {action}: {_summary(group)}")
