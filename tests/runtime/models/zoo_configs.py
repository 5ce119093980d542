"""Tiny transformers configs, one per registered architecture, with the features that make the
architecture differ turned on (sliding windows shorter than the test prompts, soft-capping,
partial rotary, biases, tied or untied heads, ALiBi, multi-query, ...)."""

from __future__ import annotations

from typing import Any

VOCAB = 49152  # the default model's tokenizer is copied into every checkpoint
WINDOW = 8  # sliding windows are shorter than every test prompt
INIT = 0.2  # weights large enough that soft-capping, scalings and biases change the logits
LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)
GPT_LIKE = dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                bos_token_id=1, eos_token_id=2)
ALTERNATING = ["sliding_attention", "full_attention"]
# MoE: 8 experts, 2 per token (a 37-token prompt routes to most of them), narrower experts
EXPERTS = 8
# vLLM's names for transformers' classes: the same model (test_vllm_names_serve_the_same_model)
VLLM_NAMES = {"PhiMoEForCausalLM": "PhimoeForCausalLM", "ErnieMoeForCausalLM": "Ernie4_5_MoeForCausalLM",
              "GPTOSSForCausalLM": "GptOssForCausalLM", "PixtralForConditionalGeneration": "LlavaForConditionalGeneration"}
MOE = dict(num_experts_per_tok=2)


def _cfg(name: str, **kw: Any) -> Any:
    import transformers

    return getattr(transformers, name)(**kw)


def _mla(c: dict) -> dict:
    """Three layers, no GQA, MLA dims unlike each other (latent 32, rope 16, nope 8, v 12)."""
    return dict(c, num_hidden_layers=3, num_key_value_heads=c["num_attention_heads"], kv_lora_rank=32,
                qk_rope_head_dim=16, qk_nope_head_dim=8, v_head_dim=12)


def _deepseek(c: dict, **kw: Any) -> dict:
    """MLA, the first layer dense, 8 routed experts (top 2) and a shared one."""
    return dict(_mla(c), first_k_dense_replace=DEEPSEEK_DENSE, n_routed_experts=8, num_experts_per_tok=2,
                n_shared_experts=1, moe_intermediate_size=32, **kw)


DEEPSEEK_DENSE = 1  # layer 0 dense (first_k_dense_replace), layers 1 and 2 MoE


def tiny_config(arch: str) -> Any:
    """The transformers config of a tiny checkpoint of `arch`."""
    c = dict(LLAMA_LIKE)
    if arch == "LlamaForCausalLM":
        cfg = _cfg("LlamaConfig", attention_bias=True, tie_word_embeddings=True, **c)
    elif arch == "MistralForCausalLM":
        cfg = _cfg("MistralConfig", sliding_window=WINDOW, head_dim=32, **c)
    elif arch == "Qwen2ForCausalLM":
        cfg = _cfg("Qwen2Config", use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1,
                   tie_word_embeddings=True, **c)
    elif arch == "Qwen3ForCausalLM":
        cfg = _cfg("Qwen3Config", head_dim=32, attention_bias=True, use_sliding_window=True,
                   sliding_window=WINDOW, max_window_layers=1, **c)
    elif arch == "GemmaForCausalLM":
        cfg = _cfg("GemmaConfig", head_dim=32, **c)
    elif arch == "Gemma2ForCausalLM":
        cfg = _cfg("Gemma2Config", head_dim=32, sliding_window=WINDOW, query_pre_attn_scalar=24,
                   attn_logit_softcapping=5.0, final_logit_softcapping=3.0, **c)
    elif arch == "Gemma3ForCausalLM":
        cfg = _cfg("Gemma3TextConfig", head_dim=32, sliding_window=WINDOW, query_pre_attn_scalar=24,
                   layer_types=ALTERNATING, final_logit_softcapping=4.0,
                   rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                    "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0}},
                   **c)
    elif arch == "PhiForCausalLM":
        c.pop("num_key_value_heads")
        cfg = _cfg("PhiConfig", partial_rotary_factor=0.5, qk_layernorm=True, **c)
    elif arch == "Phi3ForCausalLM":
        cfg = _cfg("Phi3Config", partial_rotary_factor=0.75, original_max_position_embeddings=128,
                   rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                    "short_factor": [1.0 + i / 10 for i in range(6)],
                                    "long_factor": [2.0 + i for i in range(6)],
                                    "original_max_position_embeddings": 128},
                   **c)
    elif arch == "GraniteForCausalLM":
        cfg = _cfg("GraniteConfig", embedding_multiplier=2.0, residual_multiplier=0.5,
                   attention_multiplier=0.1, logits_scaling=2.0, attention_bias=True, **c)
    elif arch == "Starcoder2ForCausalLM":
        cfg = _cfg("Starcoder2Config", sliding_window=WINDOW, use_bias=True, **c)
    elif arch == "OlmoForCausalLM":
        cfg = _cfg("OlmoConfig", clip_qkv=0.5, **c)
    elif arch == "Olmo2ForCausalLM":
        cfg = _cfg("Olmo2Config", **c)
    elif arch == "CohereForCausalLM":
        cfg = _cfg("CohereConfig", logit_scale=0.5, use_qk_norm=True, **c)
    elif arch == "Cohere2ForCausalLM":
        cfg = _cfg("Cohere2Config", logit_scale=0.5, sliding_window=WINDOW, layer_types=ALTERNATING, **c)
    elif arch == "StableLmForCausalLM":
        cfg = _cfg("StableLmConfig", partial_rotary_factor=0.25, use_qkv_bias=True, qk_layernorm=True,
                   use_parallel_residual=True, **c)
    elif arch == "PersimmonForCausalLM":
        c.pop("num_key_value_heads")
        cfg = _cfg("PersimmonConfig", partial_rotary_factor=0.5, qk_layernorm=True, **c)
    elif arch == "GlmForCausalLM":
        cfg = _cfg("GlmConfig", head_dim=16, partial_rotary_factor=0.5, **c)
    elif arch == "Glm4ForCausalLM":
        cfg = _cfg("Glm4Config", head_dim=16, partial_rotary_factor=0.5, **c)
    elif arch == "Exaone4ForCausalLM":
        cfg = _cfg("Exaone4Config", sliding_window=WINDOW, layer_types=ALTERNATING, **c)
    elif arch == "NemotronForCausalLM":
        cfg = _cfg("NemotronConfig", partial_rotary_factor=0.5, attention_bias=True, mlp_bias=True, **c)
    elif arch == "ArceeForCausalLM":
        cfg = _cfg("ArceeConfig", **c)
    elif arch == "SmolLM3ForCausalLM":
        cfg = _cfg("SmolLM3Config", no_rope_layers=[1, 0], use_sliding_window=True, sliding_window=WINDOW,
                   layer_types=ALTERNATING, **c)
    elif arch == "Ernie4_5ForCausalLM":
        cfg = _cfg("Ernie4_5Config", use_bias=True, head_dim=16, **c)
    elif arch == "MixtralForCausalLM":
        cfg = _cfg("MixtralConfig", num_local_experts=EXPERTS, sliding_window=WINDOW, **MOE, **c)
    elif arch == "Qwen2MoeForCausalLM":  # layer 0 dense (mlp_only_layers), shared expert with its gate
        cfg = _cfg("Qwen2MoeConfig", num_experts=EXPERTS, moe_intermediate_size=32, shared_expert_intermediate_size=48,
                   mlp_only_layers=[0], norm_topk_prob=False, **MOE, **c)
    elif arch == "Qwen3MoeForCausalLM":  # layer 0 dense (decoder_sparse_step)
        cfg = _cfg("Qwen3MoeConfig", num_experts=EXPERTS, moe_intermediate_size=32, decoder_sparse_step=2,
                   norm_topk_prob=True, head_dim=32, **MOE, **c)
    elif arch == "OlmoeForCausalLM":
        cfg = _cfg("OlmoeConfig", num_experts=EXPERTS, clip_qkv=2.0, **MOE, **c)
    elif arch == "GraniteMoeForCausalLM":
        cfg = _cfg("GraniteMoeConfig", num_local_experts=EXPERTS, embedding_multiplier=2.0, residual_multiplier=0.5,
                   attention_multiplier=0.1, logits_scaling=2.0, **MOE, **c)
    elif arch == "GraniteMoeSharedForCausalLM":
        cfg = _cfg("GraniteMoeSharedConfig", num_local_experts=EXPERTS, shared_intermediate_size=48,
                   residual_multiplier=0.5, logits_scaling=2.0, **MOE, **c)
    elif arch in ("PhimoeForCausalLM", "PhiMoEForCausalLM"):
        cfg = _cfg("PhimoeConfig", num_local_experts=EXPERTS, attention_bias=True, lm_head_bias=True,
                   sliding_window=WINDOW, **MOE, **c)
    elif arch in ("Ernie4_5_MoeForCausalLM", "ErnieMoeForCausalLM"):  # layer 0 dense, shared experts
        cfg = _cfg("Ernie4_5_MoeConfig", moe_num_experts=EXPERTS, moe_k=2, moe_intermediate_size=32,
                   moe_num_shared_experts=2, moe_layer_start_index=1, use_bias=True, head_dim=16,
                   tie_word_embeddings=False, **c)
    elif arch == "Glm4MoeForCausalLM":  # layer 0 dense, grouped sigmoid routing, shared expert
        cfg = _cfg("Glm4MoeConfig", n_routed_experts=EXPERTS, moe_intermediate_size=32, n_shared_experts=1,
                   first_k_dense_replace=1, n_group=2, topk_group=1, routed_scaling_factor=2.5,
                   norm_topk_prob=True, use_qk_norm=True, attention_bias=True, partial_rotary_factor=0.5,
                   head_dim=16, **MOE, **c)
    elif arch == "AriaTextForCausalLM":  # every layer MoE, top-k softmax, two shared experts, stacked experts
        c.update(intermediate_size=32)
        cfg = _cfg("AriaTextConfig", moe_num_experts=EXPERTS, moe_topk=2, moe_num_shared_experts=2, **c)
    elif arch in ("GptOssForCausalLM", "GPTOSSForCausalLM"):  # sinks, alternating windows, yarn, clamped SwiGLU
        c.update(intermediate_size=32)
        cfg = _cfg("GptOssConfig", num_local_experts=EXPERTS, head_dim=16, sliding_window=WINDOW,
                   layer_types=ALTERNATING, swiglu_limit=1.0, **MOE, **c)
    elif arch == "Llama4ForCausalLM":  # layer 0: rope, chunked, L2 q/k, dense; layer 1: NoPE, temperature, MoE
        c.update(intermediate_size=32)
        cfg = _cfg("Llama4TextConfig", num_local_experts=EXPERTS, intermediate_size_mlp=96, interleave_moe_layer_step=2,
                   no_rope_layers=[1, 0], attention_chunk_size=WINDOW, use_qk_norm=True, attn_temperature_tuning=True,
                   floor_scale=4, attn_scale=0.5, head_dim=16, rope_parameters={"rope_type": "default",
                                                                                "rope_theta": 10000.0}, **MOE, **c)
    elif arch == "DbrxForCausalLM":  # GQA, clip_qkv, p-norm renormalized weights
        cfg = _cfg("DbrxConfig", vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=2, max_seq_len=512,
                   attn_config={"kv_n_heads": 2, "clip_qkv": 2.0, "rope_theta": 10000.0},
                   ffn_config={"ffn_hidden_size": 32, "moe_num_experts": EXPERTS, "moe_top_k": 2,
                               "moe_normalize_expert_weights": 2.0},
                   bos_token_id=1, eos_token_id=2)
    elif arch == "GPT2LMHeadModel":
        cfg = _cfg("GPT2Config", **GPT_LIKE)
    elif arch == "GPTBigCodeForCausalLM":
        cfg = _cfg("GPTBigCodeConfig", multi_query=True, **GPT_LIKE)
    elif arch == "GPTJForCausalLM":
        cfg = _cfg("GPTJConfig", rotary_dim=8, **GPT_LIKE)
    elif arch == "GPTNeoXForCausalLM":
        c.pop("num_key_value_heads")
        cfg = _cfg("GPTNeoXConfig", partial_rotary_factor=0.25, use_parallel_residual=True, **c)
    elif arch == "FalconForCausalLM":
        cfg = _cfg("FalconConfig", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_kv_heads=2, new_decoder_architecture=True, bias=True, max_position_embeddings=512,
                   bos_token_id=1, eos_token_id=2)
    elif arch == "OPTForCausalLM":
        cfg = _cfg("OPTConfig", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   ffn_dim=96, max_position_embeddings=512, bos_token_id=1,
                   eos_token_id=2, pad_token_id=0)
    elif arch == "BloomForCausalLM":
        cfg = _cfg("BloomConfig", vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4, bos_token_id=1,
                   eos_token_id=2)
    elif arch == "MptForCausalLM":
        cfg = _cfg("MptConfig", vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=2,
                   max_seq_len=512, attn_config={"alibi": True, "alibi_bias_max": 8, "clip_qkv": 0.5})
    elif arch == "DeepseekV2ForCausalLM":  # q from one projection; yarn with mscale; softmax routing
        cfg = _cfg("DeepseekV2Config", **_deepseek(c, q_lora_rank=None, n_group=2, topk_group=1,
                                                   topk_method="group_limited_greedy", routed_scaling_factor=1.5),
                   rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                    "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1,
                                    "mscale": 1.0, "mscale_all_dim": 0.8})
    elif arch == "DeepseekV3ForCausalLM":  # low-rank q; sigmoid grouped routing, correction bias
        cfg = _cfg("DeepseekV3Config", **_deepseek(c, q_lora_rank=24, n_group=4, topk_group=2, norm_topk_prob=True,
                                                   routed_scaling_factor=2.5))
    elif arch == "MiniCPM3ForCausalLM":  # MLA with halves-rotated rope, MiniCPM's three scalings, longrope
        cfg = _cfg("MiniCPM3Config", **_mla(c),
                   q_lora_rank=24, scale_emb=3.0, scale_depth=1.4, dim_model_base=32, tie_word_embeddings=False,
                   rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "factor": 4.0,
                                    "original_max_position_embeddings": 128,
                                    "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0],
                                    "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]})
    else:
        raise ValueError(f"no tiny config for {arch!r}; add one to tests/runtime/models/zoo_configs.py")
    cfg.architectures = [arch]
    cfg.initializer_range = INIT
    if hasattr(cfg, "init_std"):  # OPT
        cfg.init_std = INIT
    return cfg


def checkpoint_edit(arch: str):
    """What to change in the random checkpoint before saving (None: nothing): tensors
    transformers initializes to constants get random values that matter (MoE correction biases
    change the choice; GPT-OSS's sinks, router and expert biases)."""
    if "Glm4Moe" in arch or "Ernie" in arch and "Moe" in arch or arch == "DeepseekV3ForCausalLM":
        suffixes, scale = ("e_score_correction_bias",), 0.3  # ~ the spread of sigmoid/softmax scores
    elif arch in ("GptOssForCausalLM", "GPTOSSForCausalLM"):
        suffixes, scale = ("sinks", "router.bias", "gate_up_proj_bias", "down_proj_bias"), 1.0
    else:
        return None

    def randomize(model) -> None:
        import torch

        for name, tensor in model.state_dict().items():
            if name.endswith(suffixes):
                tensor.copy_(torch.randn(tensor.shape) * scale)

    return randomize
