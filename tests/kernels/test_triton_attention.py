"""The Triton attention kernels (kernels/triton) against their torch references, over the
layouts the runtime builds: KV pools (slots, kv_heads, head_dim) read through a (rows,
max_context) int64 request-to-token table. Interpreted on the CPU at small shapes; compiled
where CUDA is."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from sgl.kernels.triton.decode_attention import decode_attention, decode_attention_reference  # noqa: E402
from sgl.kernels.triton.extend_attention import extend_attention, extend_attention_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SLOTS, MAX_CONTEXT = 400, 160
# (heads, kv_heads, head_dim, v_head_dim): MHA, GQA 4 and 8, MLA (one latent, v = its first 512)
SHAPES = [(4, 4, 64, 64), (8, 2, 128, 128), (8, 1, 256, 256), (16, 1, 576, 512)]


def make_pool(kv_heads: int, d: int, dv: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(SLOTS, kv_heads, d, generator=g).to(dtype)
    k[0] = 0  # slot 0 holds zeros, as KVPool's
    v = k[..., :dv] if dv != d else torch.randn(SLOTS, kv_heads, dv, generator=g).to(dtype)
    if dv == d:
        v[0] = 0
    return k.to(DEVICE), v.to(DEVICE)  # v: a strided view of k for MLA, as the runtime passes it


def make_table(lengths: list[int], layout: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A table whose rows 1, 3, 5, ... hold the requests; slots laid out contiguously, shuffled
    per token, or in shuffled pages of 16 (what a paged allocator hands out)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.zeros(2 * len(lengths) + 1, MAX_CONTEXT, dtype=torch.int64)
    if layout == "contiguous":
        free = torch.arange(1, SLOTS)
    elif layout == "shuffled":
        free = torch.randperm(SLOTS - 1, generator=g) + 1
    else:
        pages = torch.randperm((SLOTS - 16) // 16, generator=g)
        free = (pages[:, None] * 16 + 16 + torch.arange(16)[None, :]).flatten()
    used, rows = 0, []
    for i, n in enumerate(lengths):
        table[2 * i + 1, :n] = free[used : used + n]
        used, rows = used + n, rows + [2 * i + 1]
    return table.to(DEVICE), torch.tensor(rows, device=DEVICE)


def close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    # NOTE: compiled, tl.dot on float32 runs in tf32 (10-bit mantissa): float32 is then looser
    fp32 = 5e-3 if DEVICE == "cuda" else 1e-4
    tol = {torch.float32: fp32, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def extend_case(shape: tuple[int, int, int, int], layout: str, dtype: torch.dtype, prefixes: list[int],
                extends: list[int], seed: int = 0, **flags) -> None:
    heads, kv_heads, d, dv = shape
    k, v = make_pool(kv_heads, d, dv, dtype, seed)
    table, rows = make_table([p + e for p, e in zip(prefixes, extends)], layout, seed)
    ext = torch.tensor(extends, device=DEVICE)
    q_start = torch.cumsum(ext, 0) - ext
    q = torch.randn(sum(extends), heads, d, generator=torch.Generator().manual_seed(seed + 1)).to(dtype).to(DEVICE)
    args = (q, k, v, table, rows, q_start, torch.tensor(prefixes, device=DEVICE), ext)
    out = extend_attention(*args, max(extends), d**-0.5, **flags)
    close(out, extend_attention_reference(*args, d**-0.5, **flags), dtype)


LAYOUTS = ["contiguous", "shuffled", "paged"]


@pytest.mark.parametrize("shape,layout", [(SHAPES[1], layout) for layout in LAYOUTS] +
                         [(SHAPES[0], "paged"), (SHAPES[2], "shuffled")],
                         ids=[f"gqa4-128-{layout}" for layout in LAYOUTS] + ["mha-64-paged", "gqa8-256-shuffled"])
def test_extend_matches_reference(shape, layout) -> None:
    # prefix 0 and > 0 in one batch; extends that cross the 32-row query blocks and not
    dtype = torch.bfloat16 if shape[2] == 128 else torch.float16
    extend_case(shape, layout, dtype, prefixes=[0, 45, 7], extends=[33, 3, 17])


def test_extend_mla_shapes() -> None:
    extend_case(SHAPES[3], "paged", torch.bfloat16, prefixes=[20, 0], extends=[5, 9])


@pytest.mark.parametrize("flags", [dict(window=24), dict(softcap=4.0), dict(sinks="sinks"), dict(alibi="alibi"),
                                   dict(window=9, softcap=3.0, sinks="sinks", alibi="alibi")],
                         ids=["window", "softcap", "sinks", "alibi", "all"])
def test_extend_flags(flags) -> None:
    heads = 8
    g = torch.Generator().manual_seed(3)
    named = {"sinks": torch.randn(heads, generator=g).to(DEVICE), "alibi": torch.rand(heads, generator=g).to(DEVICE)}
    flags = {k: named.get(v, v) if isinstance(v, str) else v for k, v in flags.items()}
    extend_case((heads, 2, 64, 64), "shuffled", torch.float32, prefixes=[50, 0], extends=[9, 35], **flags)


def decode_case(shape: tuple[int, int, int, int], layout: str, dtype: torch.dtype, seq_lens: list[int],
                grouped: bool | None, num_splits: int = 4, seed: int = 0, **flags) -> None:
    heads, kv_heads, d, dv = shape
    k, v = make_pool(kv_heads, d, dv, dtype, seed)
    table, rows = make_table(seq_lens, layout, seed)
    q = torch.randn(len(seq_lens), heads, d, generator=torch.Generator().manual_seed(seed + 1)).to(dtype).to(DEVICE)
    sl = torch.tensor(seq_lens, device=DEVICE)
    out = decode_attention(q, k, v, table, rows, sl, d**-0.5, num_splits=num_splits, grouped=grouped, **flags)
    close(out, decode_attention_reference(q, k, v, table, rows, sl, d**-0.5, **flags), dtype)


@pytest.mark.parametrize("shape,grouped,layout",
                         [(SHAPES[1], True, layout) for layout in LAYOUTS] +
                         [(SHAPES[0], False, "paged"), (SHAPES[1], False, "shuffled"), (SHAPES[2], True, "paged"),
                          (SHAPES[3], True, "shuffled")],
                         ids=[f"gqa4-128-grouped-{layout}" for layout in LAYOUTS] +
                         ["mha-64-paged", "gqa4-128-per-head", "gqa8-256-grouped", "mla-576-512"])
def test_decode_matches_reference(shape, grouped, layout) -> None:
    # length 1 (the prompt's first token), a row shorter than a key block, and a long row
    # whose 2 splits each cross the 32-key blocks
    dtype = torch.bfloat16 if shape[2] in (128, 576) else torch.float16
    decode_case(shape, layout, dtype, seq_lens=[1, 75, 6], grouped=grouped, num_splits=2)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("flags", [("window", "alibi"), ("softcap", "sinks"), ("window", "softcap", "sinks", "alibi")],
                         ids=["window+alibi", "softcap+sinks", "all"])
def test_decode_flags(flags, grouped) -> None:
    heads = 8
    g = torch.Generator().manual_seed(5)
    values = {"window": 20, "softcap": 4.0, "sinks": torch.randn(heads, generator=g).to(DEVICE),
              "alibi": torch.rand(heads, generator=g).to(DEVICE)}
    decode_case((heads, 2, 64, 64), "paged", torch.float32, seq_lens=[70, 1, 33], grouped=grouped,
                num_splits=3, **{flag: values[flag] for flag in flags})


def test_decode_one_split_and_more_splits_than_keys() -> None:
    for splits in (1, 16):  # 16 splits of a 6-token row leave empty splits, which weigh nothing
        decode_case(SHAPES[1], "shuffled", torch.float16, seq_lens=[6, 40], grouped=True, num_splits=splits)


def test_wrappers_name_the_bad_field() -> None:
    k, v = make_pool(2, 64, 64, torch.float16, 0)
    table, rows = make_table([4], "contiguous", 0)
    q = torch.randn(1, 4, 64, dtype=torch.float16, device=DEVICE)
    with pytest.raises(ValueError, match="seq_lens"):
        decode_attention(q, k, v, table, rows, torch.tensor([4], dtype=torch.int32, device=DEVICE), 0.1)
    with pytest.raises(ValueError, match="k_pool/v_pool dtype"):
        decode_attention(q, k.float(), v.float(), table, rows, torch.tensor([4], device=DEVICE), 0.1)
    with pytest.raises(ValueError, match="table"):
        decode_attention(q, k, v, table.int(), rows, torch.tensor([4], device=DEVICE), 0.1)
    with pytest.raises(ValueError, match="sinks"):
        decode_attention(q, k, v, table, rows, torch.tensor([4], device=DEVICE), 0.1, sinks=torch.zeros(3, device=DEVICE))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_bf16_at_serving_shapes() -> None:
    """On a GPU: the compiled kernels at Llama-3-8B's attention shape (32 heads, 8 kv heads, 128)."""
    extend_case((32, 8, 128, 128), "paged", torch.bfloat16, prefixes=[0, 100], extends=[130, 60])
    decode_case((32, 8, 128, 128), "paged", torch.bfloat16, seq_lens=[1, 300, 157], grouped=True, num_splits=8)
    decode_case((32, 8, 128, 128), "paged", torch.bfloat16, seq_lens=[1, 300, 157], grouped=False, num_splits=8)
