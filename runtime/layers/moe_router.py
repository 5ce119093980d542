"""MoE routers: which `top_k` experts each token goes to, and with what weight.

`RouterSpec` says how a family routes; `select_experts` turns router logits into (weights, ids);
`Router` holds the router's parameters (the logits' weight and bias, DeepSeek V3's correction
bias) and computes both in float32, so a bf16 model routes as its float32 reference would.

Scorings (logits (tokens, experts) -> weights (tokens, top_k), ids (tokens, top_k)):
- softmax:      p = softmax(logits); choose the top_k of p (+ correction bias); weights p[ids]
                (Mixtral, Qwen-MoE, OLMoE, DBRX, ERNIE 4.5 with a correction bias)
- sigmoid:      s = sigmoid(logits); choose the top_k of s + correction bias, within the
                `topk_group` best of `n_group` groups (group score: sum of its best two, or
                its best with group_score="max", DeepSeek V2's group_limited_greedy);
                weights s[ids] (DeepSeek V3, GLM-4.5)
- topk_softmax: choose the top_k logits; weights softmax over the chosen ones (GPT-OSS, Granite)
- topk_sigmoid: choose the top_k logits; weights sigmoid of each (Llama 4)
- sparsemixer:  PhiMoE's top-2 sparse mixer at inference (masked softmax around each maximum)
Then, in order: `renormalize` (weights / max(sum, renorm_min); with renorm_p != 1 the p-norm
instead of the sum, as DBRX's moe_normalize_expert_weights), `routed_scaling_factor`.
`weight_input` (Llama 4): the weight scales the expert's input instead of its output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .linear import default_weight_loader

SCORINGS = ("softmax", "sigmoid", "topk_softmax", "topk_sigmoid", "sparsemixer")


@dataclass(frozen=True)
class RouterSpec:
    num_experts: int
    top_k: int
    scoring: str = "softmax"  # one of SCORINGS (module docstring)
    renormalize: bool = False  # weights / max(sum of the top_k weights, renorm_min)
    renorm_min: float = 1e-20  # ERNIE 4.5's moe_norm_min
    renorm_p: float = 1.0  # renormalize by this p-norm of the weights (DBRX); 1: their sum
    correction_bias: bool = False  # a per-expert bias added to the scores for the choice only
    n_group: int = 1  # grouped top-k (sigmoid scoring): experts split into n_group groups ...
    topk_group: int = 1  # ... of which the topk_group best are eligible
    group_score: str = "top2_sum"  # a group's score: sum of its best two (DeepSeek V3) | max (V2)
    routed_scaling_factor: float = 1.0  # routed outputs scaled by this (DeepSeek V3)
    router_bias: bool = False  # the logits' linear has a bias (GPT-OSS)
    weight_input: bool = False  # Llama 4: the weight multiplies the expert's input
    jitter_eps: float = 0.01  # sparsemixer's threshold (PhiMoE router_jitter_noise)

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"RouterSpec.scoring={self.scoring!r}: use one of {SCORINGS}")
        if not 0 < self.top_k <= self.num_experts:
            raise ValueError(f"RouterSpec.top_k={self.top_k}: must be in 1..num_experts ({self.num_experts})")
        if self.num_experts % self.n_group or not 0 < self.topk_group <= self.n_group:
            raise ValueError(f"RouterSpec n_group={self.n_group}, topk_group={self.topk_group}: n_group must "
                             f"divide num_experts ({self.num_experts}) and 0 < topk_group <= n_group")
        if self.group_score not in ("top2_sum", "max"):
            raise ValueError(f"RouterSpec.group_score={self.group_score!r}: use 'top2_sum' or 'max'")
        if self.scoring == "sparsemixer" and self.top_k != 2:
            raise ValueError("RouterSpec.scoring='sparsemixer' routes to exactly 2 experts: set top_k=2")


def _grouped_choice(scores: torch.Tensor, spec: RouterSpec) -> torch.Tensor:
    """scores (tokens, experts) with the experts outside each token's topk_group best groups
    set to -inf (a group scores the sum of its best two experts, or its best)."""
    if spec.n_group == 1:
        return scores
    t = scores.shape[0]
    grouped = scores.view(t, spec.n_group, -1)
    best_of = 1 if spec.group_score == "max" else min(2, grouped.shape[-1])
    group_scores = grouped.topk(best_of, dim=-1)[0].sum(-1)  # (tokens, n_group)
    best = group_scores.topk(spec.topk_group, dim=-1, sorted=False)[1]
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)
    return grouped.masked_fill(~keep[:, :, None], float("-inf")).view(t, -1)


def _sparsemixer(logits: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PhiMoE at inference: expert 1 is the argmax, weighted by the softmax over the experts
    within a relative 2 * eps of it; expert 2 likewise among the others."""
    weights, ids = [], []
    masked = logits
    for _ in range(2):
        top, idx = masked.max(dim=-1, keepdim=True)
        factor = logits.abs().clamp(min=top)
        far = (top - logits) / factor > 2 * eps
        probs = masked.masked_fill(far, float("-inf")).softmax(-1)
        weights.append(probs.gather(-1, idx))
        ids.append(idx)
        masked = logits.scatter(-1, idx, float("-inf"))
    return torch.cat(weights, -1), torch.cat(ids, -1)


def select_experts(logits: torch.Tensor, spec: RouterSpec,
                   correction_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (tokens, experts) float32 -> weights (tokens, top_k) float32, ids (tokens, top_k) int64."""
    k = spec.top_k
    if spec.scoring == "sparsemixer":
        weights, ids = _sparsemixer(logits, spec.jitter_eps)
    elif spec.scoring in ("topk_softmax", "topk_sigmoid"):
        top, ids = logits.topk(k, dim=-1)
        weights = top.softmax(-1) if spec.scoring == "topk_softmax" else top.sigmoid()
    else:
        scores = logits.softmax(-1) if spec.scoring == "softmax" else logits.sigmoid()
        choice = scores if correction_bias is None else scores + correction_bias
        ids = _grouped_choice(choice, spec).topk(k, dim=-1)[1]
        weights = scores.gather(1, ids)
    if spec.renormalize:
        norm = weights.sum(-1, keepdim=True) if spec.renorm_p == 1 else weights.norm(spec.renorm_p, -1, keepdim=True)
        weights = weights / norm.clamp(min=spec.renorm_min)
    if spec.routed_scaling_factor != 1.0:
        weights = weights * spec.routed_scaling_factor
    return weights, ids


def _load_flat(param: nn.Parameter, loaded: torch.Tensor, shard: object = None) -> None:
    default_weight_loader(param, loaded.reshape(-1) if loaded.numel() == param.numel() else loaded)


class Router(nn.Module):
    """The router's parameters: `weight` (experts, hidden), `bias` (experts,) with
    spec.router_bias, `e_score_correction_bias` (experts,) with spec.correction_bias."""

    def __init__(self, hidden: int, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        e = spec.num_experts
        self.weight = nn.Parameter(torch.empty(e, hidden), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(e), requires_grad=False) if spec.router_bias else None
        self.e_score_correction_bias = (nn.Parameter(torch.zeros(e), requires_grad=False)
                                        if spec.correction_bias else None)
        if self.e_score_correction_bias is not None:  # ERNIE stores it (1, experts)
            self.e_score_correction_bias.weight_loader = _load_flat  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (tokens, hidden) -> weights (tokens, top_k) float32, ids (tokens, top_k)."""
        bias = None if self.bias is None else self.bias.float()
        logits = F.linear(x.float(), self.weight.float(), bias)  # (tokens, experts)
        correction = None if self.e_score_correction_bias is None else self.e_score_correction_bias.float()
        return select_experts(logits, self.spec, correction)
