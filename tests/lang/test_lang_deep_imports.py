"""SGLang's deep module paths under `sgl.lang`: each names the same object as our module."""

from __future__ import annotations

import importlib

import pytest
import sgl
import sgl.chat_template
import sgl.interpreter
import sgl.ir
import sgl.lang.api
import sgl.lang.ir
import sgl.lang.tracer
import sgl.state


def test_deep_imports_name_our_objects():
    from sgl.lang.chat_template import get_chat_template, get_chat_template_by_model_path
    from sgl.lang.choices import greedy_token_selection, token_length_normalized
    from sgl.lang.interpreter import ProgramState, ProgramStateGroup, run_program
    from sgl.lang.ir import REGEX_FLOAT, REGEX_INT, REGEX_STR, SglGen, SglSamplingParams

    assert (REGEX_INT, REGEX_FLOAT, REGEX_STR) == (sgl.ir.REGEX_INT, sgl.ir.REGEX_FLOAT, sgl.ir.REGEX_STR)
    assert REGEX_INT == r"[-+]?[0-9]+[ \n]*"  # SGLang's value
    assert SglGen is sgl.ir.Gen and SglSamplingParams is sgl.ir.SamplingParams
    assert get_chat_template is sgl.chat_template.get_chat_template
    assert get_chat_template_by_model_path is sgl.chat_template.match_chat_template
    assert get_chat_template("chatml") is sgl.chat_template.get_chat_template("chatml")
    assert token_length_normalized is sgl.token_length_normalized
    assert greedy_token_selection is sgl.greedy_token_selection
    assert ProgramState is sgl.ProgramState is sgl.state.ProgramState
    assert ProgramStateGroup is sgl.state.ProgramStateGroup and run_program is sgl.interpreter.run_program


def test_backend_paths_and_forwarding():
    from sgl.lang.backend.base_backend import BaseBackend
    from sgl.lang.backend.openai import OpenAI
    from sgl.lang.backend.runtime_endpoint import Runtime, RuntimeEndpoint

    assert (BaseBackend, OpenAI, Runtime, RuntimeEndpoint) == (sgl.BaseBackend, sgl.OpenAI, sgl.Runtime, sgl.RuntimeEndpoint)

    assert sgl.lang.api.gen is sgl.gen and sgl.lang.ir.describe is sgl.ir.describe
    assert "SglGen" in dir(sgl.lang.ir) and "describe" in dir(sgl.lang.ir)
    assert sgl.lang.tracer.trace_program is importlib.import_module("sgl.tracer").trace_program
    with pytest.raises(ImportError, match="no_such_name"):
        from sgl.lang.ir import no_such_name  # noqa: F401
    with pytest.raises(AttributeError, match=r"alias of 'sgl.ir'"):
        _ = sgl.lang.ir.no_such_name
