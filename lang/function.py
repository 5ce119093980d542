"""SglFunction: what ``@sgl.function`` returns (run, run_batch, bind, trace, cache)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from sgl.global_config import global_config
from sgl.ir import SamplingParams

# The run-level sampling defaults (SGLang's); a gen's own non-None values override them.
SAMPLING_DEFAULTS: dict[str, Any] = {
    "max_new_tokens": 128,
    "min_new_tokens": 0,
    "n": 1,
    "stop": (),
    "stop_token_ids": (),
    "stop_regex": (),
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "ignore_eos": False,
    "return_logprob": None,
    "logprob_start_len": None,
    "top_logprobs_num": None,
    "return_text_in_logprobs": None,
}


def _split_sampling(kwargs: dict[str, Any]) -> tuple[SamplingParams, dict[str, Any]]:
    """Separate sampling keywords (with defaults filled in) from program arguments."""
    sampling = dict(SAMPLING_DEFAULTS)
    program_kwargs = {}
    for k, v in kwargs.items():
        if k in SAMPLING_DEFAULTS:
            sampling[k] = v
        else:
            program_kwargs[k] = v
    for k in ("stop", "stop_token_ids", "stop_regex"):
        v = sampling[k]
        sampling[k] = () if v is None else ((v,) if isinstance(v, (str, int)) else tuple(v))
    return SamplingParams(**sampling), program_kwargs


class SglFunction:
    def __init__(
        self,
        func: Callable,
        num_api_spec_tokens: int | None = None,
        bind_arguments: dict[str, Any] | None = None,
    ) -> None:
        params = list(inspect.signature(func).parameters.values())
        if not params or params[0].name != "s":
            raise TypeError(f"@sgl.function {func.__name__}: the first parameter must be named 's' (the program state)")
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = dict(bind_arguments or {})
        positional = [p for p in params[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.arg_names = [p.name for p in positional]
        self.num_required = sum(p.default is p.empty for p in positional)
        self.__name__ = getattr(func, "__name__", "sgl_function")
        self.__doc__ = func.__doc__

    def bind(self, **kwargs: Any) -> SglFunction:
        """A copy of this function with some arguments fixed."""
        unknown = [k for k in kwargs if k not in self.arg_names]
        if unknown:
            raise TypeError(f"{self.__name__}.bind: unknown arguments {unknown}; the function takes {self.arg_names}")
        return SglFunction(self.func, self.num_api_spec_tokens, {**self.bind_arguments, **kwargs})

    def run(self, *args: Any, stream: bool = False, backend: Any = None, use_thread: bool = True, **kwargs: Any):
        """Start the program; returns its ``ProgramState`` at once.

        Keywords named like a sampling default (``max_new_tokens``, ``temperature``, ...) set
        the run's sampling defaults; the others are program arguments.
        """
        from sgl.interpreter import run_program

        sampling, program_kwargs = _split_sampling(kwargs)
        return run_program(
            self, backend or global_config.default_backend, args, program_kwargs, sampling,
            stream=stream, use_thread=use_thread,
        )  # fmt: skip

    def run_batch(
        self,
        batch_kwargs: Sequence[dict[str, Any] | Sequence[Any]],
        *,
        backend: Any = None,
        num_threads: int | str = "auto",
        progress_bar: bool = False,
        generator_style: bool = False,
        **sampling_kwargs: Any,
    ):
        """Run one program per item (a kwargs dict or a tuple of positional arguments)."""
        from sgl.interpreter import run_program_batch

        if not isinstance(batch_kwargs, (list, tuple)):
            raise TypeError("run_batch takes a list of kwargs dicts or argument tuples")
        unknown = [k for k in sampling_kwargs if k not in SAMPLING_DEFAULTS]
        if unknown:
            raise TypeError(f"run_batch: unknown keyword arguments {unknown}; program arguments go in the list")
        if not batch_kwargs:
            return []
        items = [self._as_kwargs(x) for x in batch_kwargs]
        sampling, _ = _split_sampling(sampling_kwargs)
        return run_program_batch(
            self, backend or global_config.default_backend, items, sampling,
            num_threads=num_threads, progress_bar=progress_bar, generator_style=generator_style,
        )  # fmt: skip

    def _as_kwargs(self, item: dict[str, Any] | Sequence[Any]) -> dict[str, Any]:
        if isinstance(item, dict):
            return dict(item)
        if not isinstance(item, (list, tuple)) or not self.num_required <= len(item) <= len(self.arg_names):
            raise TypeError(
                f"run_batch item {item!r} does not match {self.__name__}{tuple(self.arg_names)}; "
                "pass a kwargs dict or a tuple of positional arguments"
            )
        return dict(zip(self.arg_names, item))

    def trace(self, *, backend: Any = None, **kwargs: Any):
        """Record the program graph without running it (``print`` the result)."""
        from sgl.tracer import trace_program

        return trace_program(self, kwargs, backend or global_config.default_backend)

    def cache(self, backend: Any = None) -> str:
        """Prefill and cache the program's constant prefix; returns the prefix."""
        from sgl.interpreter import cache_program

        return cache_program(self, backend or global_config.default_backend)

    def __call__(self, *args: Any, **kwargs: Any):
        from sgl.tracer import current_tracer

        tracer = current_tracer()
        if tracer is None:
            return self.run(*args, **kwargs)
        # called inside another program's trace: trace inline into the caller's state
        kwargs.pop("backend", None)
        return self.func(tracer, *args, **{**kwargs, **self.bind_arguments})

    def __repr__(self) -> str:
        return f"SglFunction({self.__name__})"
