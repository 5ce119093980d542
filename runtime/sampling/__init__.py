"""Sampling parameters, the batched sampler, logprobs, stop handling and detokenization."""

from .params import SamplingParams

__all__ = ["SamplingParams"]
