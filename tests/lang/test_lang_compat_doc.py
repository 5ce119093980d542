"""docs/sglang_compatibility.md stays true: each row's tests exist, each status is one of the
three, and the deep imports it lists work and name the objects `import sgl` has."""

from __future__ import annotations

import os
import re

import sgl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "sglang_compatibility.md")


def _doc() -> str:
    with open(DOC) as f:
        return f.read()


def _rows() -> list[list[str]]:
    rows = []
    for line in _doc().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] not in ("SGLang feature", "---"):
            rows.append(cells)
    return rows


def test_every_row_names_tests_that_exist():
    rows = _rows()
    assert len(rows) >= 10
    for feature, status, _, tests in rows:
        assert status in ("yes", "differs", "no"), feature
        refs = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", tests)
        assert refs, f"{feature}: name at least one test"
        for path, name in refs:
            with open(os.path.join(ROOT, path)) as f:
                assert re.search(rf"^(async )?def {name}\(", f.read(), re.M), f"{feature}: {path}::{name} is gone"


def test_listed_deep_imports_work_and_name_our_objects():
    block = re.search(r"```python\n(.*?)```", _doc().split("## Deep imports")[1], re.S).group(1)
    names: dict = {}
    exec(compile(block, DOC, "exec"), names)
    for name in ("ProgramState", "RuntimeEndpoint", "Runtime", "OpenAI", "BaseBackend", "gen", "select",
                 "function", "token_length_normalized", "greedy_token_selection", "global_config"):
        assert names[name] is getattr(sgl, name), name
    assert names["REGEX_INT"] == r"[-+]?[0-9]+[ \n]*"
