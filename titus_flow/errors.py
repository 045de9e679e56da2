"""Errors the CLI reports in one line, and how validation errors read to a user.

A :class:`UserError` is bad input: the CLI prints its ``messages`` (one line each)
without a traceback and exits 2. A :class:`ClusterError` is the cluster failing
what was asked (Temporal cannot be reached, refused a call, a workflow failed):
one line, exit 1. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic.fields import FieldInfo

from titus_flow.spec import HealthCheck, Job, Policy, SpecModel
from titus_flow.spec.retry import Backoff


class UserError(Exception):
    """A mistake of the user's (bad input), reported without a traceback.

    Give one message or a list of them: ``UserError("bad x")``,
    ``UserError(["bad x", "bad y"])``. ``messages`` holds one line per problem; a
    message with line breaks is split so that the one-line-each rule holds.
    """

    def __init__(self, messages: str | Iterable[str]) -> None:
        given = [messages] if isinstance(messages, str) else list(messages)
        lines = [line for message in given for line in message.splitlines() if line.strip()]
        if not lines:
            raise ValueError("a UserError needs at least one message")
        super().__init__("\n".join(lines))
        self.messages: list[str] = lines


class SpecError(UserError):
    """A job file or job spec is wrong: cannot be read, parsed or validated."""


class ClusterError(RuntimeError):
    """The cluster could not do what was asked, through no fault of the input.

    The CLI prints the message (always one line) without a traceback and exits 1.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


TLS_HANDSHAKE = "TLS handshake"
"""Every reason that names the TLS handshake has this in it (and gets TLS_ADVICE)."""
TLS_ADVICE = (
    "check the TLS settings: the server must accept the client certificate and key"
    " (--tls-cert / --tls-key, TITUS_FLOW_TLS_CERT / TITUS_FLOW_TLS_KEY), and --tls-ca /"
    " TITUS_FLOW_TLS_CA must hold the CA that signed the server's certificate"
)


class ServerUnreachableError(ClusterError):
    """Temporal at ``address`` cannot be reached, or the connection to it was lost.

    ``reason`` says how, briefly (see :func:`connection_reason`); ``local`` is
    whether the address is one ``titus-flow up`` serves, which decides the advice
    (unless the reason names the TLS handshake: then the advice is the TLS settings).
    """

    def __init__(self, address: str, reason: str, *, local: bool) -> None:
        if TLS_HANDSHAKE in reason:
            advice = TLS_ADVICE
        elif local:
            advice = (
                "is the server running? start it with `titus-flow up`,"
                " or set --address / TITUS_FLOW_ADDRESS"
            )
        else:
            advice = (
                "is it up and reachable from here? check --address / TITUS_FLOW_ADDRESS"
                " and the TLS and API key settings"
            )
        super().__init__(f"cannot reach Temporal at {address} ({reason}): {advice}")
        self.address = address


_REASON_CHARS = 100  # longest reason quoted from an unrecognised error

# How a connection to Temporal broke, from the error's text (the Temporal core's Rust
# debug output), first match.
_BROKEN = (
    (("connection refused",), "connection refused"),
    (("tcp connect error",), "cannot connect"),
    (("dns error", "failed to lookup", "name or service not known"), "unknown host"),
    (("certificate", "tls", "ssl"), f"{TLS_HANDSHAKE} failed"),
    (
        ("connection reset", "broken pipe", "transport error", "h2 protocol", "connection closed"),
        "connection lost",
    ),
)
_TIMEOUTS = ("timeout expired", "timed out", "deadline")


def broken_connection(text: str) -> str | None:
    """How the connection to Temporal broke, in a few words, if ``text`` says it did."""
    lowered = text.lower()
    for needles, reason in _BROKEN:
        if any(needle in lowered for needle in needles):
            return reason
    return None


def connection_reason(text: str) -> str:
    """A few words on why connecting to Temporal failed, from the error's text."""
    if reason := broken_connection(text):
        return reason
    if any(needle in text.lower() for needle in _TIMEOUTS):
        return "no answer in time"
    first = text.strip().splitlines()[0] if text.strip() else "no detail"
    return first if len(first) <= _REASON_CHARS else first[: _REASON_CHARS - 3] + "..."


# -- format_validation_error ------------------------------------------------------------


def format_validation_error(
    err: pydantic.ValidationError, source: str, prefix: str = ""
) -> list[str]:
    """One line per error in ``err``: ``<source>: <field.path>: <message>``.

    The path is dotted with list indices as ``[0]`` and odd dict keys as
    ``["key"]``; ``prefix`` (usually the job name) starts it. The tags pydantic
    puts in paths for ``kind`` unions (``batch``, ``exponential``, ...) are left
    out, as are its ``Value error,`` prefix and documentation URLs; unknown
    fields get a "did you mean" from the fields the model has.
    """
    root = _root_type(err)
    lines: list[str] = []
    for error in err.errors(include_url=False):
        walk = _walk(root, error["loc"])
        path = ".".join(p for p in (prefix, walk.path) if p).replace(".[", "[")
        where = f"{source}: {path}" if path else source
        line = f"{where}: {_message(error, walk)}"
        if line not in lines:  # a union can report the same problem once per member
            lines.append(line)
    return lines


_KEY_AS_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SHORT = 60  # longest repr of a bad value quoted in a message


def _spec_models() -> Iterator[type[SpecModel]]:
    pending: list[type[SpecModel]] = [SpecModel]
    while pending:
        model = pending.pop()
        yield model
        pending.extend(model.__subclasses__())


# The unions whose member ``kind`` picks: fields of one member are unknown to another.
_TAGGED_UNIONS = (Job, Backoff, HealthCheck, Policy)


def _root_type(err: pydantic.ValidationError) -> Any:
    """The type ``err`` was raised validating, when it is part of the spec."""
    by_title = {model.__name__: model for model in _spec_models()}
    if err.title in by_title:
        return by_title[err.title]
    # JOB_ADAPTER's errors carry a generated title like "tagged-union[...BatchJob...]".
    if err.title.startswith("tagged-union[") and "BatchJob" in err.title:
        return Job
    return None


class _Walk:
    """Where an error's ``loc`` leads: the printable path and the type found there."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.model: type[pydantic.BaseModel] | None = None  # model of the last field step
        self.here: Any = None  # the type at the end of the path (None: lost track)

    @property
    def path(self) -> str:
        return ".".join(self.parts)


def _members(tp: Any) -> tuple[list[Any], bool]:
    """The types a (possibly Annotated or optional) union allows, and whether it is tagged.

    In a tagged union a ``discriminator`` picks the member, and pydantic puts the
    tag in the error path.
    """
    if get_origin(tp) is Annotated:
        base, *metadata = get_args(tp)
        members, tagged = _members(base)
        return members, tagged or any(
            isinstance(m, FieldInfo) and m.discriminator for m in metadata
        )
    if get_origin(tp) in (Union, types.UnionType):
        found: list[Any] = []
        tagged = False
        for arg in get_args(tp):
            if arg is not type(None):
                members, arg_tagged = _members(arg)
                found += members
                tagged = tagged or arg_tagged
        return found, tagged
    return ([] if tp is None else [tp]), False


def _kind(tp: Any) -> str | None:
    """The ``kind`` tag of a spec model, if it has one."""
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel) and "kind" in tp.model_fields:
        tag = tp.model_fields["kind"].default
        return tag if isinstance(tag, str) else None
    return None


def _field_type(field: FieldInfo) -> Any:
    if field.discriminator:  # moved from the annotation onto the FieldInfo by pydantic
        return Annotated[field.annotation, pydantic.Field(discriminator=field.discriminator)]
    return field.annotation


def _walk(root: Any, loc: tuple[str | int, ...]) -> _Walk:
    """Follow ``loc`` through the spec's types, dropping union tags from the path."""
    walk = _Walk()
    here = root
    steps = list(loc)
    while steps:
        step = steps.pop(0)
        members, tagged = _members(here)
        models = [m for m in members if isinstance(m, type) and issubclass(m, pydantic.BaseModel)]
        origins = {get_origin(m): m for m in members}
        if tagged and any(_kind(m) == step for m in models):
            here = next(m for m in models if _kind(m) == step)
            continue  # the tag says which member; the user never wrote it as a path
        owner = next((m for m in models if isinstance(step, str) and step in m.model_fields), None)
        if owner is not None and isinstance(step, str):
            walk.model = owner
            walk.parts.append(step)
            here = _field_type(owner.model_fields[step])
        elif isinstance(step, int) and (sequence := origins.get(list) or origins.get(tuple)):
            walk.parts.append(f"[{step}]")
            here = get_args(sequence)[0]
        elif isinstance(step, str) and dict in origins:
            key_type, value_type = get_args(origins[dict])
            key = step if _KEY_AS_ATTRIBUTE.fullmatch(step) else f"[{json.dumps(step)}]"
            walk.parts.append(key)
            here = value_type
            if steps and steps[0] == "[key]":  # the key itself is invalid, not its value
                steps.pop(0)
                here = key_type
        elif len(members) > 1 and isinstance(step, str):
            continue  # pydantic names the union member it tried ("int", "str"): not a path
        else:
            walk.model = models[0] if len(models) == 1 else None
            walk.parts.append(f"[{step}]" if isinstance(step, int) else str(step))
            here = None
    walk.here = here
    return walk


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _message(error: Any, walk: _Walk) -> str:
    """A pydantic error message reworded to say what to do."""
    kind: str = error["type"]
    msg: str = error["msg"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "assertion_error":
        return msg.removeprefix("Assertion failed, ")
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        return _unknown_field(str(error["loc"][-1]), walk.model)
    if kind == "union_tag_invalid":
        return (
            f"unknown {ctx['discriminator'].strip(chr(39))} {ctx['tag']!r}:"
            f" use one of {ctx['expected_tags']}"
        )
    if kind == "union_tag_not_found":
        field = ctx["discriminator"].strip("'")
        tags = [tag for tag in map(_kind, _members(walk.here)[0]) if tag]
        choices = f" to one of {', '.join(map(repr, tags))}" if tags else ""
        return f"missing {field!r}: set {field}{choices}"
    if kind == "model_type":
        return f"must be a mapping of fields (got {_short(value)})"
    if kind == "string_type" and isinstance(value, int | float):  # bools are ints
        return f'must be a string (got {_short(value)}): quote it, e.g. "{json.dumps(value)}"'
    msg = re.sub(r"^Input should be\b", "must be", msg)
    if isinstance(value, str | int | float | bool | None):
        msg += f" (got {_short(value)})"
    return msg


def _unknown_field(name: str, model: type[pydantic.BaseModel] | None) -> str:
    """Say what an unknown field may have meant, in this model or in another kind."""
    if model is None:
        return f"unknown field {name!r}; remove it"
    mine = _kind(model)
    # Fields of the other members of the model's kind union, by the kind that has them.
    elsewhere: dict[str, list[str]] = {}
    for union in _TAGGED_UNIONS:
        members = _members(union)[0]
        if mine is not None and model in members:
            for member in members:
                for field in set(member.model_fields) - set(model.model_fields):
                    elsewhere.setdefault(field, []).append(str(_kind(member)))
    if name in elsewhere:
        return (
            f"unknown field {name!r} for kind {mine!r}: it is a field of kind"
            f" {' or '.join(map(repr, elsewhere[name]))}; change kind or remove the field"
        )
    known = list(model.model_fields)
    close = difflib.get_close_matches(name, [*known, *elsewhere], n=1)
    if close and close[0] in elsewhere:
        kinds = " or ".join(map(repr, elsewhere[close[0]]))
        return f"unknown field {name!r}; did you mean {close[0]!r} (a field of kind {kinds})?"
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; known fields: {', '.join(known)}"
