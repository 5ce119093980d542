"""Model tests share tests/runtime/llama_fixtures.py (tiny checkpoints, transformers references)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
