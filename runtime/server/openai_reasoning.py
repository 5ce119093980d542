"""Reasoning parsers (`--reasoning-parser`): a reasoning model's thinking apart from its answer.

| name          | thinking                                                                   |
|---------------|----------------------------------------------------------------------------|
| `deepseek-r1` | everything up to `</think>` (the template opens `<think>`, so the output may not) |
| `qwen3`       | `<think>...</think>` at the start; no `<think>`: no thinking                  |
| `gpt-oss`     | the harmony `analysis` channel; the answer is the `final` channel             |
| `qwen3-thinking`, `step3` | as `deepseek-r1` (the output starts inside the thinking)        |
| `glm45`       | as `qwen3`                                                                  |
| `kimi`        | `◁think▷...◁/think▷` at the start                                           |

(the names are SGLang's; ``sgl.separate_reasoning(expr, model_type=...)`` takes the same ones)

``split`` takes a whole output; ``split_partial`` a stream's text so far (thinking, answer so far,
whether the thinking has ended). An output cut off inside the thinking is all thinking.
"""

from __future__ import annotations

import re

from ..constrained.regex_text import escape


class ReasoningParser:
    name = ""
    start, end = "<think>", "</think>"
    start_optional = False  # deepseek-r1: the template already opened the thinking

    def split_partial(self, text: str, final: bool = False) -> tuple[str, str, bool]:
        body = text.lstrip()
        if body.startswith(self.start):
            body = body[len(self.start):]
        elif not self.start_optional:
            if self.start.startswith(body) and body and not final:
                return "", "", False  # may still become `<think>`
            return "", text, True
        at = body.find(self.end)
        if at < 0:
            keep = _partial_suffix(body, self.end) if not final else 0
            return body[: len(body) - keep].strip("\n"), "", False  # a last newline may end the thinking
        return body[:at].strip("\n"), body[at + len(self.end):].lstrip("\n"), True

    def split(self, text: str) -> tuple[str, str]:
        thought, answer, _ = self.split_partial(text, final=True)
        return thought, answer

    def constrain_after(self, regex: str) -> str | None:
        """A regex of the whole output: the thinking free (any text without the end marker),
        then ``regex``; None where the format's markers are special tokens."""
        start = f"({escape(self.start)})?" if self.start_optional else escape(self.start)
        return start + text_without(self.end) + escape(self.end) + r"\n*" + f"({regex})"


def text_without(marker: str) -> str:
    """Regex of any text that does not contain ``marker``, for a marker whose first character
    occurs in it only once (`</think>`): text is `[^<]*` then segments `<...`, each not going on
    with the marker's rest."""
    head, rest = re.escape(marker[0]), marker[1:]
    not_head = f"[^{head}]"
    body = ""
    for i in range(len(rest) - 1, -1, -1):  # segment after `<`: must not begin with `rest`
        c = re.escape(rest[i])
        body = f"(|[^{head}{c}]{not_head}*|{c}{body})" if i < len(rest) - 1 else f"(|[^{head}{c}]{not_head}*)"
    return f"{not_head}*({head}{body})*"


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that begins ``marker`` (held back while streaming)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


class DeepSeekR1Parser(ReasoningParser):
    name, start_optional = "deepseek-r1", True


class Qwen3Parser(ReasoningParser):
    name = "qwen3"


class KimiParser(ReasoningParser):
    name, start, end = "kimi", "◁think▷", "◁/think▷"


class GptOssReasoningParser(ReasoningParser):
    name = "gpt-oss"
    _ANALYSIS = re.compile(r"<\|channel\|>analysis<\|message\|>(.*?)(?:<\|end\|>|$)", re.S)
    _FINAL = "<|channel|>final<|message|>"

    def constrain_after(self, regex: str) -> str | None:
        return None  # harmony's markers are special tokens

    def split_partial(self, text: str, final: bool = False) -> tuple[str, str, bool]:
        thought = "\n".join(m.strip() for m in self._ANALYSIS.findall(text))
        at = text.find(self._FINAL)
        if at >= 0:
            answer = re.split(r"<\|return\|>|<\|end\|>", text[at + len(self._FINAL):])[0]
            return thought, answer, True
        if "<|channel|>commentary" in text:  # tool calls: the tool parser reads the whole text
            return thought, text, True
        if final:
            return thought, text if not thought and "<|channel|>" not in text else "", True
        return thought, "", False


REASONING_PARSERS: dict[str, type[ReasoningParser]] = {
    "deepseek-r1": DeepSeekR1Parser, "qwen3": Qwen3Parser, "gpt-oss": GptOssReasoningParser,
    "deepseek-v3": DeepSeekR1Parser, "qwen3-thinking": DeepSeekR1Parser, "step3": DeepSeekR1Parser,
    "glm45": Qwen3Parser, "kimi": KimiParser,
}


def get_reasoning_parser(name: str, field: str = "--reasoning-parser") -> ReasoningParser:
    """The parser called ``name`` (case-insensitive); ``field`` names the option in the error."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REASONING_PARSERS:
        raise ValueError(f"{field} {name!r} is not known; use one of {sorted(REASONING_PARSERS)}")
    return REASONING_PARSERS[key]()
