"""``sglang.lang.chat_template``: our templates (``sgl.chat_template``)."""

from __future__ import annotations

import sgl.chat_template as _target
from sgl.chat_template import (
    ChatTemplate,
    get_chat_template,
    match_chat_template,
    register_chat_template,
)
from sgl.lang._alias import forward

# SGLang's name for matching a template from a model path
get_chat_template_by_model_path = match_chat_template

__all__ = ["ChatTemplate", "get_chat_template", "get_chat_template_by_model_path", "register_chat_template"]

__getattr__, __dir__ = forward(_target, globals())
