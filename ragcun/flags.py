"""Command-line flags generated from the configuration dataclasses, so a setting is declared once.

A field declared with :func:`option` carries its help text (and, where argparse needs more than the type,
the flag's name, ``nargs``/``const``, a deprecated old name, or a group of mutually exclusive flags) in its
metadata.
:func:`add_flags` turns the fields of one or more dataclasses into argparse flags, one argument group per
dataclass (the pattern of Tevatron's ``HfArgumentParser``): the type gives ``type``, a ``Literal`` gives
``choices``, ``X | None`` accepts X with a default of None, a ``tuple`` gives ``nargs`` of its length and
``tuple[X, ...]`` any number of values (each checked as X), a bool defaulting to False gives a switch and
one defaulting to True gives ``--name`` / ``--no_name``.
:func:`from_args` builds the dataclass back from the parsed namespace. :func:`pydantic_model` gives the
same fields as a pydantic model, the typed arguments of a Ray Serve application builder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

logger = logging.getLogger(__name__)
_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str = "",
    default_factory: Any = _MISSING,
    flag: str | None = None,
    nargs: str | int | None = None,
    const: Any = None,
    metavar: str | tuple[str, ...] | None = None,
    required: bool = False,
    one_of: str | None = None,
    deprecated_aliases: tuple[str, ...] = (),
    cli: bool = True,
) -> Any:
    """A dataclass field with what its flag needs. ``flag``: the option's name when it is not the field's;
    ``one_of``: fields sharing this name form a mutually exclusive group (required if any member is);
    ``deprecated_aliases``: old flags still accepted, with a warning that names the new one;
    ``cli=False``: no flag (set by the program, or only from a config file)."""
    metadata = {"help": help, "flag": flag, "nargs": nargs, "const": const,
                "metavar": metavar, "required": required, "one_of": one_of, "cli": cli,
                "deprecated_aliases": deprecated_aliases}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _DeprecatedAlias(argparse.Action):
    """An old flag: sets the new flag's value and says so."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        logger.warning("%s is deprecated and will be removed; use %s", option_string, self.replacement)
        setattr(namespace, self.dest, values)


def _unwrap_optional(annotation: Any) -> Any:
    """X for ``X | None``; anything else as it is."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(get_args(annotation)) == 2:
            return members[0]
    return annotation


def _flag_fields(config: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(config)
    return [(f, hints[f.name]) for f in dataclasses.fields(config) if f.metadata.get("cli", True) and f.init]


def _dest(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name


def _argument(f: dataclasses.Field, annotation: Any) -> tuple[list[str], dict[str, Any]]:
    meta = f.metadata
    default = f.default if f.default is not _MISSING else (
        f.default_factory() if f.default_factory is not _MISSING else None)
    base = _unwrap_optional(annotation)
    names = [f"--{_dest(f)}"]
    kwargs: dict[str, Any] = {"dest": _dest(f), "default": default, "help": meta.get("help") or None}
    if meta.get("required"):
        kwargs["required"] = True
    if base is bool:
        kwargs["action"] = "store_true"
        return names, kwargs
    if get_origin(base) is tuple and get_args(base)[-1] is Ellipsis:
        kwargs["nargs"] = "*"  # option(nargs="+") when at least one value is needed
        base = get_args(base)[0]
    elif get_origin(base) is tuple:
        element_types = get_args(base)
        kwargs["nargs"] = len(element_types)
        base = element_types[0]
    if get_origin(base) is Literal:
        kwargs["choices"] = list(get_args(base))
        kwargs["type"] = type(get_args(base)[0])
    elif base in (int, float, str):
        kwargs["type"] = base
    elif get_origin(base) is dict or base is dict:
        kwargs["type"] = json.loads
        kwargs["metavar"] = "JSON"
    else:
        raise TypeError(f"{f.name}: no flag for type {annotation!r}; declare it with option(cli=False)")
    for key in ("nargs", "const", "metavar"):
        if meta.get(key) is not None:
            kwargs[key] = meta[key]
    return names, kwargs


def add_flags(parser: argparse.ArgumentParser, *configs: type, defaults: dict[str, Any] | None = None) -> None:
    """Add a flag for every field of each dataclass in ``configs`` (one argument group each);
    ``defaults`` overrides a field's default for this program."""
    defaults = defaults or {}
    for config in configs:
        title = (config.__doc__ or config.__name__).strip().splitlines()[0]
        group = parser.add_argument_group(config.__name__, title)
        exclusive: dict[str, Any] = {}
        fields = _flag_fields(config)
        required_groups = {f.metadata["one_of"] for f, _ in fields if f.metadata.get("one_of")
                           and f.metadata.get("required")}
        for f, annotation in fields:
            names, kwargs = _argument(f, annotation)
            if f.name in defaults:
                kwargs["default"] = defaults[f.name]
            target = group
            if f.metadata.get("one_of"):
                name = f.metadata["one_of"]
                if name not in exclusive:
                    exclusive[name] = group.add_mutually_exclusive_group(required=name in required_groups)
                target = exclusive[name]
                kwargs.pop("required", None)
            if kwargs.get("action") == "store_true" and kwargs["default"] is True:
                # A switch that is on by default: --name keeps it, --no_name (or --no-name) turns it off.
                pair = target.add_mutually_exclusive_group()
                pair.add_argument(*names, **kwargs)
                off = [n.replace("--", "--no_", 1) for n in names] + [n.replace("--", "--no-", 1) for n in names]
                pair.add_argument(*off, dest=_dest(f), action="store_false", help=f"turn {names[0]} off")
                continue
            target.add_argument(*names, **kwargs)
            for alias in f.metadata.get("deprecated_aliases", ()):
                extra = {k: v for k, v in kwargs.items() if k not in ("default", "help", "required", "dest")}
                group.add_argument(alias, dest=kwargs["dest"], action=_DeprecatedAlias, replacement=names[0],
                                   default=argparse.SUPPRESS, help=argparse.SUPPRESS, **extra)


def from_args(config: type, args: argparse.Namespace, **values: Any) -> Any:
    """The dataclass built from the parsed flags, with ``values`` taking precedence. A field without a flag
    of its own takes a flag of the same name from another dataclass if the parser has one (a sweep's
    output_dir is the training run's), else its default; tuples come back as tuples."""
    hints = typing.get_type_hints(config)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif hasattr(args, _dest(f)):
            value = getattr(args, _dest(f))
            base = _unwrap_optional(hints[f.name])
            kwargs[f.name] = tuple(value) if get_origin(base) is tuple and value is not None else value
    return config(**kwargs)


def pydantic_model(config: type) -> type:
    """A pydantic model with the dataclass's fields, types and defaults, refusing unknown keys and reading a
    JSON string into a dict field (``serve run … autoscaling='{"max_replicas": 4}'``)."""
    import pydantic

    hints = typing.get_type_hints(config)
    fields: dict[str, Any] = {}
    json_fields = []
    for f in dataclasses.fields(config):
        default = f.default if f.default is not _MISSING else pydantic.Field(default_factory=f.default_factory)
        fields[f.name] = (hints[f.name], pydantic.Field(default=default, description=f.metadata.get("help") or None)
                          if f.default is not _MISSING else default)
        base = _unwrap_optional(hints[f.name])
        if get_origin(base) is dict or base is dict:
            json_fields.append(f.name)

    def read_json(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    validators = {"read_json": pydantic.field_validator(*json_fields, mode="before")(read_json)} if json_fields else {}
    return pydantic.create_model(f"{config.__name__}Args", __config__=pydantic.ConfigDict(extra="forbid"),
                                 __validators__=validators, **fields)
