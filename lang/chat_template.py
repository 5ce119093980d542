"""Chat templates: the text a role's begin and end append.

Two sources:
- the model's own tokenizer template (local engine, our server): ``from_tokenizer`` renders the
  Jinja template around a marker and splits the result into a prefix and suffix per role;
- SGLang's named templates (``RuntimeEndpoint``): ``get_chat_template(name)`` and
  ``match_chat_template(model_path)``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    role_prefix_and_suffix: Mapping[str, tuple[str, str]]
    default_system_prompt: str | None = None
    stop_str: tuple[str, ...] = ()
    image_token: str = "<image>"
    # "plain": every role uses its own prefix/suffix; "llama2": the first system message is
    # folded into the first user turn ([INST] <<SYS>>...<</SYS>> user [/INST]).
    style: str = "plain"

    def __post_init__(self) -> None:
        if self.style not in ("plain", "llama2"):
            raise ValueError(f"ChatTemplate style must be 'plain' or 'llama2', got {self.style!r}")

    def get_prefix_and_suffix(self, role: str, hist_messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
        prefix, suffix = self.role_prefix_and_suffix.get(role, ("", ""))
        if self.style == "llama2":
            if role == "system" and not hist_messages:
                user_prefix, _ = self.role_prefix_and_suffix.get("user", ("", ""))
                return user_prefix + prefix, suffix
            if role == "user" and len(hist_messages) == 1 and hist_messages[0]["role"] == "system":
                return "", suffix
        return prefix, suffix


_NAMED: dict[str, ChatTemplate] = {}


def register_chat_template(template: ChatTemplate, *aliases: str) -> None:
    for key in (template.name, *aliases):
        _NAMED[key] = template


def get_chat_template(name: str) -> ChatTemplate:
    try:
        return _NAMED[name]
    except KeyError:
        raise ValueError(
            f"unknown chat template {name!r}; known: {sorted(_NAMED)}"
        ) from None


_CHATML = {r: (f"<|im_start|>{r}\n", "<|im_end|>\n") for r in ROLES}
register_chat_template(
    ChatTemplate("default", {"system": ("SYSTEM:", "\n"), "user": ("USER:", "\n"), "assistant": ("ASSISTANT:", "\n")})
)
register_chat_template(ChatTemplate("chatml", _CHATML, stop_str=("<|im_end|>",)))
register_chat_template(
    ChatTemplate(
        "qwen", _CHATML, default_system_prompt="You are a helpful assistant.", stop_str=("<|im_end|>",)
    )
)
register_chat_template(
    ChatTemplate(
        "llama-3-instruct",
        {r: (f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>") for r in ROLES},
        stop_str=("<|eot_id|>",),
        image_token="<|image|>",
    )
)
register_chat_template(
    ChatTemplate(
        "llama-2-chat",
        {"system": ("<<SYS>>\n", "\n<</SYS>>\n\n"), "user": ("[INST] ", " [/INST]"), "assistant": ("", " </s><s>")},
        style="llama2",
    )
)
register_chat_template(
    ChatTemplate(
        "mistral",
        {"system": ("[SYSTEM_PROMPT] ", " [/SYSTEM_PROMPT]"), "user": ("[INST] ", " [/INST]"), "assistant": ("", " </s><s>")},
        stop_str=("</s>",),
        image_token="[IMG]",
    )
)
register_chat_template(
    ChatTemplate(
        "gemma-it",
        {"system": ("", ""), "user": ("<start_of_turn>user\n", "<end_of_turn>\n"), "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")},
        stop_str=("<end_of_turn>",),
        image_token="<start_of_image>",
    )
)
register_chat_template(
    ChatTemplate(
        "vicuna_v1.1",
        {"system": ("", " "), "user": ("USER:", " "), "assistant": ("ASSISTANT:", "</s>")},
        default_system_prompt=(
            "A chat between a curious user and an artificial intelligence assistant. The "
            "assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
        image_token=" <image>\n",
    ),
    "vicuna",
)

# (pattern on the model path, template name), first match wins, as SGLang's matchers.
_MATCHERS: tuple[tuple[str, str], ...] = (
    (r"llama-2.*chat|codellama.*instruct", "llama-2-chat"),
    (r"pixtral|(mistral|mixtral).*instruct", "mistral"),
    (r"llama-3.*instruct", "llama-3-instruct"),
    (r"tinyllama|smollm.*instruct", "chatml"),
    (r"qwen.*(chat|instruct)", "qwen"),
    (r"gemma.*it", "gemma-it"),
    (r"vicuna|llava-v1\.5|llava-next-video-7b", "vicuna_v1.1"),
)


def match_chat_template(model_path: str) -> ChatTemplate:
    """SGLang's rule: the named template whose pattern matches the path, else ``default``."""
    for pattern, name in _MATCHERS:
        if re.search(pattern, model_path, re.IGNORECASE):
            return get_chat_template(name)
    return get_chat_template("default")


# ---------------------------------------------------------------------------------------------
# From a tokenizer's own Jinja template.

_MARK = "SGLMARKERCONTENT"


def _split(text: str, what: str) -> tuple[str, str]:
    if text.count(_MARK) != 1:
        raise ValueError(f"cannot derive the {what} of this chat template: the content is not kept verbatim")
    prefix, suffix = text.split(_MARK)
    return prefix, suffix


def _role_part(render, history: list[dict], role: str) -> tuple[str, str]:
    """The prefix/suffix of ``role`` after ``history``: render both and take the difference."""
    base = render(history) if history else ""
    full = render(history + [{"role": role, "content": _MARK}])
    if not full.startswith(base):
        raise ValueError(f"cannot derive the {role} role of this chat template: history re-rendered differently")
    return _split(full[len(base) :], f"{role} role")


def from_tokenizer(tokenizer: Any, name: str = "tokenizer") -> ChatTemplate:
    """Derive prefix/suffix per role from ``tokenizer.apply_chat_template``.

    Renders a conversation with a marker as content and splits around it; a default system
    prompt that the template inserts when the first message is not a system one is detected
    and kept as ``default_system_prompt`` (the interpreter inserts it the same way).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat_template; pass a named template instead")

    def render(messages: list[dict]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    system_msg = {"role": "system", "content": "S"}
    try:
        sys_prefix, sys_suffix = _split(render([{"role": "system", "content": _MARK}]), "system role")
        history: list[dict] = [system_msg]
    except Exception:  # the template rejects system messages (e.g. Gemma): system is plain text
        sys_prefix, sys_suffix, history = "", "", []
    user = _role_part(render, history, "user")
    assistant = _role_part(render, history + [{"role": "user", "content": "U"}], "assistant")

    # NOTE: a tokenizer that adds BOS itself must not get it twice from the template text.
    bos = getattr(tokenizer, "bos_token", None)
    if bos and getattr(tokenizer, "add_bos_token", False) and sys_prefix.startswith(bos):
        sys_prefix = sys_prefix[len(bos) :]

    default_system = None
    alone = render([{"role": "user", "content": _MARK}])
    user_text = user[0] + _MARK + user[1]
    if alone.endswith(user_text) and history:
        inserted = alone[: -len(user_text)]
        if inserted.startswith(sys_prefix) and inserted.endswith(sys_suffix) and len(inserted) > len(sys_prefix) + len(sys_suffix):
            default_system = inserted[len(sys_prefix) : len(inserted) - len(sys_suffix)]

    stop = assistant[1].strip()
    return ChatTemplate(
        name=name,
        role_prefix_and_suffix={"system": (sys_prefix, sys_suffix), "user": user, "assistant": assistant},
        default_system_prompt=default_system,
        stop_str=(stop,) if stop else (),
        image_token=_image_token(tokenizer),
    )


def with_image_token(template: ChatTemplate, token: str | None) -> ChatTemplate:
    """The template with the model's own image placeholder text (a server or engine says it)."""
    return template if not token else dataclasses.replace(template, image_token=token)


def _image_token(tokenizer: Any) -> str:
    token = getattr(tokenizer, "image_token", None)
    return token if isinstance(token, str) and token else "<image>"


__all__ = [
    "ChatTemplate",
    "from_tokenizer",
    "get_chat_template",
    "match_chat_template",
    "register_chat_template",
    "with_image_token",
]
