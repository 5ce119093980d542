"""Conformance over the JSON-Schema-Test-Suite (see conformance.py for the method)."""

from __future__ import annotations

import os

import pytest
from conformance import SUITE, run_suite

pytestmark = pytest.mark.skipif(not os.path.isdir(SUITE), reason="JSON-Schema-Test-Suite not present")


def test_no_invalid_instance_is_accepted(info):
    counts = run_suite(info)
    print("\n" + counts.summary())
    assert counts.invalid_accepted == 0, counts.accepted_invalid
    # Every schema either compiles or names the keyword it cannot enforce.
    assert counts.compiled + counts.rejected > 300
    assert counts.compiled > 150 and counts.valid_accepted > 300
