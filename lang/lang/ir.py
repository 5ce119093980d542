"""``sglang.lang.ir``: our IR (``sgl.ir``), with SGLang's ``Sgl*`` class names."""

from __future__ import annotations

import sgl.ir as _target
from sgl.function import SglFunction
from sgl.ir import (
    REGEX_BOOL,
    REGEX_FLOAT,
    REGEX_INT,
    REGEX_STR,
    Argument,
    CommitLazy,
    ConcateAndAppend,
    ConstantText,
    Expr,
    ExprList,
    Gen,
    Image,
    RoleBegin,
    RoleEnd,
    SamplingParams,
    Select,
    SeparateReasoning,
    Variable,
    VarScopeBegin,
    VarScopeEnd,
    Video,
)
from sgl.lang._alias import forward

SglSamplingParams = SamplingParams
SglExpr = Expr
SglExprList = ExprList
SglArgument = Argument
SglConstantText = ConstantText
SglGen = Gen
SglSelect = Select
SglImage = Image
SglVideo = Video
SglRoleBegin = RoleBegin
SglRoleEnd = RoleEnd
SglVariable = Variable
SglVarScopeBegin = VarScopeBegin
SglVarScopeEnd = VarScopeEnd
SglConcateAndAppend = ConcateAndAppend
SglCommitLazy = CommitLazy
SglSeparateReasoning = SeparateReasoning

__all__ = [
    "REGEX_BOOL", "REGEX_FLOAT", "REGEX_INT", "REGEX_STR", "SglArgument", "SglCommitLazy",
    "SglConcateAndAppend", "SglConstantText", "SglExpr", "SglExprList", "SglFunction", "SglGen",
    "SglImage", "SglRoleBegin", "SglRoleEnd", "SglSamplingParams", "SglSelect", "SglSeparateReasoning",
    "SglVarScopeBegin",
    "SglVarScopeEnd", "SglVariable", "SglVideo",
]  # fmt: skip

__getattr__, __dir__ = forward(_target, globals())
