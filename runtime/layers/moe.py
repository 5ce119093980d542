"""Mixture-of-Experts: `SparseMoE` = a router (moe_router.py) + `FusedExperts` + optional
shared experts, for every MoE family by declaration.

Interface (stable; DeepSeek V2/V3 use it too):

    spec = MoESpec(RouterSpec(num_experts=8, top_k=2, renormalize=True), intermediate=14336)
    moe = SparseMoE(hidden, spec, shared=LlamaMLP(...) or None)
    y = moe(x)                      # x (tokens, hidden) -> (tokens, hidden)

Parameters (names under the block; a model renames its checkpoint's to these):
    gate.weight (E, H), gate.bias (E,) [router_bias], gate.e_score_correction_bias (E,)
    experts.w13_weight (E, 2I, H): each expert's gate rows then up rows
    experts.w2_weight (E, H, I): each expert's down projection
    experts.w13_bias (E, 2I), experts.w2_bias (E, H) [MoESpec.expert_bias]
    shared_expert.* (the module given), shared_expert_gate.weight (1, H) [MoESpec.shared_gate]

Checkpoints store experts one tensor per expert and projection (`...experts.3.w1.weight`);
a model lists `expert_weight_rules(...)` in its `stacked_weights` and the loader
(loader/weights.py) puts each into its expert's slice: shard (expert, "gate" | "up" |
"down"). A checkpoint that already stacks them (Granite's input_linear) loads whole, in the
layout above (a model's `transform_weights` converts other layouts first).

Forward, on every device: tokens are grouped by expert (one stable sort of the (token, k)
choices), so each chosen expert runs one product over its rows and an expert no token chose
is never read. Products go through layers/linear.py's `linear` (the bf16 CPU kernel for a
few rows: decode). `FusedExperts.calls[e]` counts the products expert e ran (tests read it).

output = routed_scaling(sum_k w_k * expert_k(x)) + [sigmoid(shared_gate(x)) *] shared(x);
with `weight_input` (Llama 4) the weight scales the expert's input instead. Activations:
"silu" (and the other names of layers/activation.py) as act(gate) * up, or "swiglu_oai"
(GPT-OSS: gate clamped above at `swiglu_limit`, up clamped to +-limit,
(up + 1) * gate * sigmoid(alpha * gate))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activation import gated, get_activation
from .linear import default_weight_loader, linear
from .moe_router import Router, RouterSpec

KINDS = ("gate", "up", "down")


@dataclass(frozen=True)
class MoESpec:
    router: RouterSpec
    intermediate: int  # of each routed expert
    act: str = "silu"  # an activation of layers/activation.py, or "swiglu_oai"
    expert_bias: bool = False  # biases on both expert projections (GPT-OSS)
    swiglu_alpha: float = 1.702  # swiglu_oai only
    swiglu_limit: float = 7.0  # swiglu_oai only
    shared_gate: bool = False  # Qwen2-MoE: the shared expert's output scaled by sigmoid(x . w)

    def __post_init__(self) -> None:
        if self.act != "swiglu_oai":
            get_activation(self.act)  # raises naming the supported ones


def expert_weight_rules(gate: str = "gate_proj", up: str = "up_proj", down: str = "down_proj",
                        experts: str = "experts") -> list[tuple[str, str, str]]:
    """`stacked_weights` entries for per-expert checkpoint tensors named
    `<experts>.<e>.<gate|up|down>.weight`: (pattern with an `expert` group, replacement, kind)."""
    rule = r"\.{experts}\.(?P<expert>\d+)\.{proj}\.weight$"
    return [(rule.format(experts=experts, proj=gate), f".{experts}.w13_weight", "gate"),
            (rule.format(experts=experts, proj=up), f".{experts}.w13_weight", "up"),
            (rule.format(experts=experts, proj=down), f".{experts}.w2_weight", "down")]


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class FusedExperts(nn.Module):
    """E gated experts stacked: w13 (E, 2I, H), w2 (E, H, I) (module docstring)."""

    def __init__(self, num_experts: int, hidden: int, intermediate: int, act: str = "silu",
                 bias: bool = False, swiglu_alpha: float = 1.702, swiglu_limit: float = 7.0) -> None:
        super().__init__()
        self.num_experts, self.hidden, self.intermediate = num_experts, hidden, intermediate
        self.w13_weight = _param(num_experts, 2 * intermediate, hidden)
        self.w2_weight = _param(num_experts, hidden, intermediate)
        self.w13_bias = _param(num_experts, 2 * intermediate) if bias else None
        self.w2_bias = _param(num_experts, hidden) if bias else None
        self.oai = act == "swiglu_oai"
        self.act = None if self.oai else get_activation(act)
        self.alpha, self.limit = swiglu_alpha, swiglu_limit
        for p, kinds in ((self.w13_weight, ("gate", "up")), (self.w2_weight, ("down",))):
            p.weight_loader = self._load  # type: ignore[attr-defined]
            p.shards = tuple((e, k) for e in range(num_experts) for k in kinds)  # type: ignore[attr-defined]
        self.calls = [0] * num_experts  # products run per expert (tests read this)

    def _load(self, param: nn.Parameter, loaded: torch.Tensor, shard: tuple[int, str] | None = None) -> None:
        """shard (expert, kind): one expert's (out, in) tensor into its slice; None: the whole
        stacked tensor in our layout."""
        if shard is None:
            default_weight_loader(param, loaded)
            return
        e, kind = shard
        if not 0 <= e < self.num_experts or kind not in KINDS:
            raise ValueError(f"expert shard {shard!r}: expert must be < {self.num_experts}, kind one of {KINDS}")
        target = param.data[e]
        if kind != "down":
            target = target.narrow(0, 0 if kind == "gate" else self.intermediate, self.intermediate)
        if target.shape != loaded.shape:
            raise ValueError(f"expert {e} {kind}: expected {tuple(target.shape)}, checkpoint has {tuple(loaded.shape)}")
        target.copy_(loaded)

    def _activate(self, gate_up: torch.Tensor) -> torch.Tensor:
        """(rows, 2I) -> (rows, I)."""
        if not self.oai:
            return gated(self.act, gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        gate = gate.clamp(max=self.limit)
        up = up.clamp(-self.limit, self.limit)
        return (up + 1) * (gate * torch.sigmoid(gate * self.alpha))

    def expert(self, e: int, rows: torch.Tensor) -> torch.Tensor:
        """Expert e on rows (n, H) -> (n, H): one product per projection."""
        self.calls[e] += 1
        b13 = None if self.w13_bias is None else self.w13_bias[e]
        b2 = None if self.w2_bias is None else self.w2_bias[e]
        return linear(self._activate(linear(rows, self.w13_weight[e], b13)), self.w2_weight[e], b2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                weight_input: bool = False) -> torch.Tensor:
        """x (T, H), weights (T, k) float32, ids (T, k) -> (T, H) float32: sum_k w * expert(x)."""
        t, k = ids.shape
        out = torch.zeros(t, self.hidden, dtype=torch.float32, device=x.device)
        if t == 1:  # decode of one token: its k experts, no sort
            for j, e in enumerate(ids[0].tolist()):
                w = weights[0, j]
                y = self.expert(e, (x * w).to(x.dtype) if weight_input else x)
                out += y.float() if weight_input else y.float() * w
            return out
        flat = ids.flatten()
        order = torch.argsort(flat, stable=True)  # choices grouped by expert, tokens in order
        tokens = order // k  # (T * k,) token of each sorted choice
        w_sorted = weights.flatten()[order][:, None]
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue  # never read
            idx = tokens[start:start + n]
            w = w_sorted[start:start + n]
            rows = x.index_select(0, idx)
            if weight_input:
                y = self.expert(e, (rows * w).to(x.dtype)).float()
            else:
                y = self.expert(e, rows).float() * w
            out.index_add_(0, idx, y)
            start += n
        return out


class SparseMoE(nn.Module):
    """Router + routed experts + optional shared expert (module docstring)."""

    def __init__(self, hidden: int, spec: MoESpec, shared: nn.Module | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.gate = Router(hidden, spec.router)
        self.experts = FusedExperts(spec.router.num_experts, hidden, spec.intermediate, spec.act,
                                    spec.expert_bias, spec.swiglu_alpha, spec.swiglu_limit)
        self.shared_expert = shared
        self.shared_expert_gate = _GateVector(hidden) if spec.shared_gate else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden) in x's dtype; + residual when given (added
        in float32 before the one rounding), as a dense MLP's forward takes it."""
        shape = x.shape
        return self.finish(self.combine(x.reshape(-1, shape[-1])), residual, x.dtype, shape)

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        """x (tokens, hidden) -> (tokens, hidden) float32: the routed experts' weighted sum plus
        the (gated) shared expert. Linear in the experts' outputs, so a tensor-parallel rank's
        partial sums add up to it (distributed/tp_layers.py: TPSparseMoE)."""
        weights, ids = self.gate(x)
        out = self.experts(x, weights, ids, self.spec.router.weight_input)
        if self.shared_expert is not None:
            shared = self.shared_expert(x).float()
            if self.shared_expert_gate is not None:
                shared = shared * torch.sigmoid(self.shared_expert_gate(x))
            out = out + shared
        return out

    @staticmethod
    def finish(out: torch.Tensor, residual: torch.Tensor | None, dtype: torch.dtype,
               shape: torch.Size) -> torch.Tensor:
        """The float32 sum (+ residual, in float32) rounded once to dtype, in the input's shape."""
        if residual is not None:
            out = out + residual.reshape(out.shape).float()
        return out.to(dtype).view(shape)


class _GateVector(nn.Module):
    """Qwen2-MoE's shared_expert_gate: one logit per token, x . w, in float32."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.weight = _param(1, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.weight.float().t()  # (tokens, 1)
