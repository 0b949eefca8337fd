"""The pieces the command modules build their Click commands from.

:class:`EnumChoice` is an option whose values are an enum's (matched without regard to case)
and which hands the command the enum member. :func:`option` shows an option's default and its
environment variable in ``--help``, as every option of ``netpersona`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["PATH", "EnumChoice", "option"]

F = TypeVar("F", bound=Callable[..., Any])

# A path as given (no check that it exists: each command says what is wrong with the file).
PATH = click.Path(path_type=Path)


class EnumChoice(click.Choice[str]):
    """One of an enum's values, given in any case; the command gets the member."""

    def __init__(self, enum_type: type[Enum], *, case_sensitive: bool = False) -> None:
        super().__init__([str(member.value) for member in enum_type], case_sensitive)
        self.enum_type = enum_type

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.enum_type):
            return value
        return self.enum_type(super().convert(value, param, ctx))


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows the option's environment variable (if any) and its default."""
    attrs.setdefault("show_envvar", "envvar" in attrs)
    attrs.setdefault("show_default", True)
    if isinstance(attrs.get("default"), Enum):  # shown as its value; EnumChoice makes it a member
        attrs["default"] = attrs["default"].value
    return click.option(*decls, **attrs)
