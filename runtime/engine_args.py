"""Engine flags for the command line, generated from `EngineConfig`'s fields (shared by the
`sgl` command and the server's launcher)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from .config import EngineConfig


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(EngineConfig)
    for f in dataclasses.fields(EngineConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = str(hints[f.name])
        if "bool" in hint:
            parser.add_argument(flag, action="store_true", default=f.default, help=f"(default: {f.default})")
        else:
            kind = int if "int" in hint else float if "float" in hint else str
            parser.add_argument(flag, type=kind, default=f.default, help=f"(default: {f.default})")


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(EngineConfig)}
