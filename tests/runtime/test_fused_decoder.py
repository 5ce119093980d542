"""The fused C decoder stack (runtime/layers/fused_decoder.py) on a tiny bf16 Llama: it agrees
with the module path, and a token gets bit-identical logits whether it is decoded alone, in a
batch, or inside a short extend (what keeps jump-forward's greedy output unchanged)."""

from __future__ import annotations

import pytest
import torch
from llama_fixtures import save_tiny_checkpoint, tiny_llama_config
from sgl.kernels.cpu.isa import isa
from sgl.kernels.linear import AVX2_MAX_ROWS, max_rows
from sgl.runtime import Engine
from sgl.runtime.forward_batch import ForwardMode, ScheduledBatch, ScheduledReq
from sgl.runtime.layers.fused_decoder import ROWS_PER_CALL


@pytest.fixture(scope="module", params=["packed", "as loaded"])
def engine(request, tmp_path_factory, default_tokenizer_folder):
    """The tiny model with its weights packed for the tile kernel (where the CPU has AMX) or as
    loaded (the linear kernel of kernels/cpu/linear_bf16.c: a model packing does not cover)."""
    import sgl.runtime.loader as loader

    packed = request.param == "packed"
    # the kernels it needs (tests/conftest.py): skips only where the CPU lacks them
    request.getfixturevalue("tile_kernels" if packed else "vector_kernels")
    folder = save_tiny_checkpoint(tiny_llama_config("gqa_llama3_tied_bias"), str(tmp_path_factory.mktemp("tiny")),
                                  default_tokenizer_folder)
    with pytest.MonkeyPatch.context() as patch:
        if not packed:
            patch.setattr(loader, "pack_tile_weights", lambda model: 0)
        e = Engine(folder, dtype="bfloat16", max_total_tokens=2048)
    with e:
        fused = e._scheduler.runner.fused
        assert fused is not None
        assert fused._weights() == ("packed" if packed else "plain")
        yield e



def forward(runner, mode, tokens, positions, rows, prefix_lens, extend_lens, slots, logit_rows, rowwise=False):
    """One forward of the runner from packed lists (as the scheduler's batches were once given)."""
    reqs, at = [], 0
    for row, start, n in zip(rows, prefix_lens, extend_lens):
        reqs.append(ScheduledReq(row, start, tokens[at : at + n], slots[at : at + n]))
        at += n
    return runner.forward(ScheduledBatch(mode, reqs, logit_rows, rowwise=rowwise)).logits

class Driver:
    """Runs forwards on the engine's model directly, each request on its own table row."""

    def __init__(self, engine: Engine) -> None:
        self.runner = engine._scheduler.runner
        self.table = self.runner.table.table
        self.next_slot = 1000

    def _slots(self, n: int) -> torch.Tensor:
        s = torch.arange(self.next_slot, self.next_slot + n)
        self.next_slot += n
        return s

    def extend(self, row: int, tokens: list[int], start: int, rowwise: bool = False) -> torch.Tensor:
        s = self._slots(len(tokens))
        self.table[row, start : start + len(tokens)] = s
        return forward(self.runner, ForwardMode.EXTEND, tokens, list(range(start, start + len(tokens))), [row],
                       [start], [len(tokens)], s, list(range(len(tokens))), rowwise=rowwise)

    def decode(self, rows: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        s = self._slots(len(rows))
        for r, p, slot in zip(rows, positions, s.tolist()):
            self.table[r, p] = slot
        return forward(self.runner, ForwardMode.DECODE, tokens, positions, rows, positions, [1] * len(rows), s,
                       list(range(len(rows))))


class Counting:
    """Stands in for the runner's fused decoder: runs `stack`, recording the rows of each call."""

    def __init__(self, stack, calls: list[int]) -> None:
        self.stack, self.calls, self.accepts = stack, calls, stack.accepts

    def __call__(self, x, batch):
        self.calls.append(x.shape[0])
        return self.stack(x, batch)


def test_a_token_gets_the_same_logits_alone_in_a_batch_or_in_an_extend(engine) -> None:
    model = engine._scheduler.runner  # holds the fused decoder (`fused`)
    fused, calls = model.fused, []
    # extends the stack takes: any size packed (AMX); as loaded, up to max_rows (32 with AMX, 16
    # on AVX2), and then decode and rowwise batches of any size; AVX-512 without AMX (4) takes
    # no rowwise batch past 4 rows, so the identity is not the stack's there
    limit = ROWS_PER_CALL if fused._weights() == "packed" else max_rows(fused.config.hidden_size)
    if limit < AVX2_MAX_ROWS:
        pytest.skip(f"level {isa().level.label}: the stack takes rowwise batches of up to {limit} rows only")
    torch.manual_seed(0)
    prompt = torch.randint(3, 40000, (120,)).tolist()

    def run() -> None:
        d = Driver(engine)
        long = prompt[24:]
        d.extend(4, long[:40], 0)  # 40 tokens: the module path (the stack where it takes any size)
        long_alone = [d.decode([4], [long[p]], [p])[0] for p in range(40, 84)]
        d.extend(5, long[:40], 0)
        rowwise = d.extend(5, long[40:84], 40, rowwise=True)  # 44 rows: two calls of the fused path
        assert all(torch.equal(rowwise[j], long_alone[j]) for j in range(44))
        d.extend(0, prompt[:20], 0)
        alone = [d.decode([0], [prompt[p]], [p])[0] for p in range(20, 24)]
        d.extend(1, prompt[:20], 0)
        in_extend = d.extend(1, prompt[20:23], 20)  # 3 tokens after a cached prefix
        d.extend(2, prompt[:20], 0)
        d.extend(3, prompt[:9], 0)
        for p in range(20, 24):  # decoded in a batch of 2 with a request of another length
            batch = d.decode([2, 3], [prompt[p], prompt[p - 11]], [p, p - 11])
            assert torch.equal(batch[0], alone[p - 20])
        for j in range(3):
            assert torch.equal(in_extend[j], alone[j])

    model.fused = Counting(fused, calls)
    try:
        engine._call(run)
    finally:
        model.fused = fused
    # the decodes and every extend of up to `limit` tokens; the 44-token rowwise extend
    assert sorted(calls) == sorted([1] * 48 + [2] * 4 + [44] + [n for n in (3, 9, 20, 20, 20, 40, 40) if n <= limit])


def test_a_decode_batch_of_16_runs_in_the_stack_each_row_as_alone(engine) -> None:
    """At every level the stack runs, a decode step of 16 rows is one stack call (AVX-512
    without AMX too: DOT_STACK_ROWS), and each row's hidden state out of the stack is the one it
    gets decoded alone (the LM head after it may take another kernel for 16 rows than for 1)."""
    torch.manual_seed(3)
    prompts = [torch.randint(3, 40000, (5 + i,)).tolist() for i in range(16)]
    model = engine._scheduler.runner  # holds the fused decoder (`fused`)
    fused, outputs = model.fused, []

    class Recording:  # the fused decoder, keeping each call's output
        accepts = fused.accepts

        def __call__(self, x, batch):
            out = fused(x, batch)
            outputs.append((batch.mode, out))
            return out

    def run() -> None:
        d = Driver(engine)
        alone = []
        for row, p in enumerate(prompts):
            d.extend(row, p[:-1], 0)
            outputs.clear()
            d.decode([row], [p[-1]], [len(p) - 1])
            alone.append(outputs[-1][1][0])
        for row, p in enumerate(prompts):
            d.extend(16 + row, p[:-1], 0)
        outputs.clear()
        d.decode([16 + r for r in range(16)], [p[-1] for p in prompts], [len(p) - 1 for p in prompts])
        assert [(mode, out.shape[0]) for mode, out in outputs] == [(ForwardMode.DECODE, 16)]
        assert all(torch.equal(outputs[0][1][r], alone[r]) for r in range(16))

    model.fused = Recording()
    try:
        engine._call(run)
    finally:
        model.fused = fused


def test_fused_decoder_agrees_with_the_module_path(engine, vector_kernels) -> None:
    torch.manual_seed(1)
    prompt = torch.randint(3, 40000, (30,)).tolist()
    model = engine._scheduler.runner  # holds the fused decoder (`fused`)

    def run() -> None:
        d = Driver(engine)
        d.extend(0, prompt[:26], 0)
        fused = torch.stack([d.decode([0], [prompt[p]], [p])[0] for p in range(26, 30)])
        fused_decoder, model.fused = model.fused, None
        try:
            d.extend(1, prompt[:26], 0)
            modules = torch.stack([d.decode([1], [prompt[p]], [p])[0] for p in range(26, 30)])
        finally:
            model.fused = fused_decoder
        fused_lp, modules_lp = fused.log_softmax(-1), modules.log_softmax(-1)
        assert (fused_lp - modules_lp).abs().max() < 0.15  # bf16: the attention kernels round differently
        assert torch.equal(fused.argmax(-1), modules.argmax(-1))

    engine._call(run)


@pytest.fixture(scope="module")
def wide_heads_engine(tmp_path_factory, default_tokenizer_folder, tile_kernels):
    """A tiny bf16 Llama whose heads are 32 wide, so prefill attention runs on the tile unit."""
    config = tiny_llama_config("gqa_llama3_tied_bias")
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 32
    folder = save_tiny_checkpoint(config, str(tmp_path_factory.mktemp("wide")), default_tokenizer_folder)
    with Engine(folder, dtype="bfloat16", max_total_tokens=2048) as e:
        yield e


def test_a_prefill_through_the_fused_stack_equals_the_module_path(wide_heads_engine) -> None:
    """Two requests of 40 and 57 new tokens, one after a cached prefix, in one extend: the fused
    stack (one C call, tile attention per request) gives the module path's logits bit for bit."""
    engine = wide_heads_engine
    torch.manual_seed(2)
    prompts = [torch.randint(3, 40000, (n,)).tolist() for n in (40, 70)]
    model = engine._scheduler.runner  # holds the fused decoder (`fused`)
    calls = []

    def run(fused: bool, first_slot: int) -> torch.Tensor:
        d = Driver(engine)
        d.next_slot = first_slot
        d.extend(1, prompts[1][:13], 0)  # the cached prefix of the second request
        rows, prefix, new = [0, 1], [0, 13], [prompts[0], prompts[1][13:]]
        slots = d._slots(sum(map(len, new)))
        d.table[0, :40], d.table[1, 13:70] = slots[:40], slots[40:]
        tokens = new[0] + new[1]
        positions = list(range(40)) + list(range(13, 70))
        saved = model.fused
        if fused:
            model.fused = Counting(saved, calls)
        else:
            model.fused = None
        try:
            return forward(d.runner, ForwardMode.EXTEND, tokens, positions, rows, prefix, [40, 57], slots,
                           list(range(len(tokens))))
        finally:
            model.fused = saved

    fused = engine._call(lambda: run(True, 1000))
    modules = engine._call(lambda: run(False, 1200))
    assert calls == [97]  # the whole extend in the fused stack
    assert torch.equal(fused, modules)


@pytest.fixture(scope="module")
def gemma3_engine(tmp_path_factory, default_tokenizer_folder, vector_kernels):
    """A tiny bf16 Gemma 3: 1 + w norms, sandwich norms, per-head q/k norms, GeLU-tanh, a
    query_pre_attn_scalar, sliding-window and global layers with ropes of their own. No final
    soft-cap (the head applies it, outside the stack): capped logits would hide the layers'
    differences (measured: 0.06 nats between the paths here, 2.5 with the second rope left out,
    3.2 without the k norm)."""
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=512, sliding_window=8, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=None, initializer_range=0.2,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0}},
        bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["Gemma3ForCausalLM"])
    folder = save_tiny_checkpoint(config, str(tmp_path_factory.mktemp("gemma3")), default_tokenizer_folder)
    with Engine(folder, dtype="bfloat16", max_total_tokens=2048) as e:
        yield e


def test_gemma3_layers_run_in_the_stack_as_the_module_path_does(gemma3_engine) -> None:
    """Decode of a 30-token prompt (past the 8-token window) through the stack against the
    module path (torch's norms and GeLU round a little differently: within the bf16 bound), and
    a token decoded alone equals the same token in a batch of two."""
    engine = gemma3_engine
    model = engine._scheduler.runner
    stack = model.fused
    assert stack is not None and stack.variant and len(stack.rotaries) == 2 and stack.gelu and stack.norm_offset == 1
    torch.manual_seed(3)
    prompt = torch.randint(3, 40000, (30,)).tolist()
    calls = []

    def run() -> None:
        d = Driver(engine)
        model.fused = Counting(stack, calls)
        d.extend(0, prompt[:22], 0)
        fused = torch.stack([d.decode([0], [prompt[p]], [p])[0] for p in range(22, 30)])
        d.extend(2, prompt[:22], 0)
        d.extend(3, prompt[:9], 0)
        for p in range(22, 26):
            batch = d.decode([2, 3], [prompt[p], prompt[p - 11]], [p, p - 11])
            assert torch.equal(batch[0], fused[p - 22])
        model.fused = None
        d.extend(1, prompt[:22], 0)
        modules = torch.stack([d.decode([1], [prompt[p]], [p])[0] for p in range(22, 30)])
        fused_lp, modules_lp = fused.float().log_softmax(-1), modules.float().log_softmax(-1)
        assert (fused_lp - modules_lp).abs().max() < 0.15
        assert torch.equal(fused.argmax(-1), modules.argmax(-1))

    try:
        engine._call(run)
    finally:
        model.fused = stack
    assert calls.count(1) == 8 and calls.count(2) == 4  # every decode ran in the stack
