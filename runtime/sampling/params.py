"""SamplingParams: one request's sampling settings, validated on construction.

Invalid values raise ValueError naming the field and the valid range."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

CONSTRAINTS = ("regex", "json_schema", "choices", "ebnf", "structural_tag")  # at most one per request


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    stop_regex: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    n: int = 1
    seed: int | None = None
    regex: str | None = None
    json_schema: str | None = None
    choices: list[str] | None = None
    ebnf: str | None = None  # a GBNF or Lark grammar (SGLang's field)
    structural_tag: str | None = None  # SGLang's structural-tag object as JSON
    logit_bias: dict[int, float] | None = None
    token_healing: bool = False  # back off the prompt's last token (sampling/healing.py)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if isinstance(self.stop_regex, str):
            self.stop_regex = [self.stop_regex]
        if isinstance(self.stop_token_ids, int):
            self.stop_token_ids = [self.stop_token_ids]
        if isinstance(self.json_schema, dict):
            self.json_schema = json.dumps(self.json_schema)
        if isinstance(self.structural_tag, dict):
            self.structural_tag = json.dumps(self.structural_tag)
        self.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingParams:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"sampling_params: unknown field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**d)

    def validate(self) -> None:
        def check(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"sampling_params.{name}={getattr(self, name)!r}: {rule}")

        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_num(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        check(is_int(self.max_new_tokens) and self.max_new_tokens >= 0, "max_new_tokens", "must be an integer >= 0")
        check(is_int(self.min_new_tokens) and 0 <= self.min_new_tokens, "min_new_tokens", "must be an integer >= 0")
        check(self.min_new_tokens <= self.max_new_tokens, "min_new_tokens", "must be <= max_new_tokens")
        check(is_num(self.temperature) and self.temperature >= 0, "temperature", "must be a number >= 0 (0 = greedy)")
        check(is_num(self.top_p) and 0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        check(is_int(self.top_k) and (self.top_k == -1 or self.top_k >= 1), "top_k", "must be -1 (off) or >= 1")
        check(is_num(self.min_p) and 0 <= self.min_p <= 1, "min_p", "must be in [0, 1]")
        check(is_num(self.frequency_penalty) and -2 <= self.frequency_penalty <= 2, "frequency_penalty", "must be in [-2, 2]")
        check(is_num(self.presence_penalty) and -2 <= self.presence_penalty <= 2, "presence_penalty", "must be in [-2, 2]")
        check(is_num(self.repetition_penalty) and 0 < self.repetition_penalty <= 2, "repetition_penalty", "must be in (0, 2]")
        check(isinstance(self.stop, list) and all(isinstance(s, str) and s for s in self.stop), "stop",
              "must be a non-empty string or a list of non-empty strings")
        check(isinstance(self.stop_token_ids, list) and all(is_int(t) and t >= 0 for t in self.stop_token_ids),
              "stop_token_ids", "must be a list of token ids >= 0")
        check(isinstance(self.stop_regex, list) and all(isinstance(s, str) for s in self.stop_regex), "stop_regex",
              "must be a string or a list of strings")
        for pattern in self.stop_regex:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"sampling_params.stop_regex={pattern!r} does not compile: {e}") from None
        for name in ("ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim",
                     "token_healing"):
            check(isinstance(getattr(self, name), bool), name, "must be true or false")
        check(is_int(self.n) and 1 <= self.n <= 128, "n", "must be an integer in [1, 128]")
        check(self.seed is None or (is_int(self.seed) and -(2**63) <= self.seed < 2**64), "seed",
              "must be an integer that fits in 64 bits")
        check(self.regex is None or isinstance(self.regex, str), "regex", "must be a string")
        check(self.json_schema is None or isinstance(self.json_schema, str), "json_schema", "must be a JSON string or object")
        check(self.choices is None or (isinstance(self.choices, list) and self.choices
                                       and all(isinstance(c, str) for c in self.choices)),
              "choices", "must be a non-empty list of strings")
        check(self.ebnf is None or isinstance(self.ebnf, str), "ebnf", "must be a GBNF or Lark grammar string")
        check(self.structural_tag is None or isinstance(self.structural_tag, str), "structural_tag",
              "must be a structural-tag object or its JSON")
        constraints = [k for k in CONSTRAINTS if getattr(self, k) is not None]
        if len(constraints) > 1:
            raise ValueError(f"sampling_params: {' and '.join(constraints)} are mutually exclusive; give only one")
        if self.token_healing and constraints:
            raise ValueError(f"sampling_params.token_healing cannot be combined with {constraints[0]}: the healed "
                             "first token would have to extend the prompt and start the constraint at once; "
                             "drop one of them")
        if self.logit_bias is not None:
            check(isinstance(self.logit_bias, dict), "logit_bias", "must map token ids to numbers")
            try:
                bias = {int(k): float(v) for k, v in self.logit_bias.items()}
            except (TypeError, ValueError):
                bias = None
            check(bias is not None and all(math.isfinite(v) for v in bias.values()), "logit_bias",
                  "must map integer token ids to finite numbers")
            self.logit_bias = bias

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def constraint(self) -> tuple[str, Any] | None:
        """(kind, spec) of the grammar constraint, if any."""
        for kind in CONSTRAINTS:
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        return None
