"""The interface every backend implements; the default for an unsupported operation is a
clear error naming the backend and the operation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sgl.chat_template import ChatTemplate, get_chat_template
from sgl.choices import ChoicesDecision, ChoicesSamplingMethod
from sgl.ir import SamplingParams

if TYPE_CHECKING:
    from sgl.executor import StreamExecutor


class BaseBackend:
    """What the interpreter calls. ``state`` is the program's executor: backends read
    ``state.text_`` (the full text so far) and ``state.images_`` (attached images)."""

    # join("concate_and_append") can join KV caches instead of re-sending text
    support_concate_and_append: bool = False
    # whether the model accepts images / video
    is_multimodal: bool = False

    def _unsupported(self, op: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not support {op}")

    def get_chat_template(self) -> ChatTemplate:
        return get_chat_template("default")

    def generate(self, state: StreamExecutor, sampling_params: SamplingParams) -> tuple[Any, dict]:
        """Complete ``state.text_``; returns (text, meta_info), or lists of them when n > 1."""
        raise self._unsupported("generate")

    def generate_stream(
        self, state: StreamExecutor, sampling_params: SamplingParams
    ) -> Iterator[tuple[str, dict]]:
        """Yield (new text piece, meta_info so far) until the completion ends."""
        raise self._unsupported("streaming generation")

    def select(
        self,
        state: StreamExecutor,
        choices: Sequence[str],
        temperature: float,
        choices_method: ChoicesSamplingMethod,
    ) -> ChoicesDecision:
        raise self._unsupported("select")

    def commit_lazy_operations(self, state: StreamExecutor) -> None:
        """Make the backend cache ``state.text_`` (before a fork). Default: nothing to do."""

    def concatenate_and_append(self, src_states: Sequence[StreamExecutor], dst_state: StreamExecutor) -> None:
        raise self._unsupported("concatenate_and_append (KV-cache join)")

    def cache_prefix(self, prefix_str: str) -> None:
        """Prefill and cache a constant prefix. Default: nothing to do."""

    def end_program(self, state: StreamExecutor) -> None:
        """Called once when a program state ends. Default: nothing to do."""

    def flush_cache(self) -> Any:
        raise self._unsupported("flush_cache")

    def get_server_info(self) -> dict:
        raise self._unsupported("get_server_info")

    def shutdown(self) -> None:
        """Release resources. Default: nothing to do."""
