"""Decoders as pooling models against transformers on tiny random checkpoints (float32, within
1e-4, alone and in a batch of mixed lengths): last-token embedders (Qwen2Model, Qwen3Model,
LlamaModel, MistralModel, and a CausalLM with is_embedding=True), whose vector behind a cached
prefix is the one computed without it; sequence classifiers (Llama, Qwen2, Qwen3, Gemma2: one
label is a raw reward, several a softmax); Qwen2ForRewardModel's value head, built on a verified
Qwen2 model (its upstream class is remote code)."""

from __future__ import annotations

import pytest
import torch
from pooling_fixtures import decoder_prompts, save_model
from sgl.runtime import Engine
from zoo_configs import VOCAB, tiny_config


def check_close(got, want) -> None:
    torch.testing.assert_close(torch.tensor(got), want.float(), atol=1e-4, rtol=0)


def last_hidden(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids])).last_hidden_state[0, -1]


@pytest.mark.parametrize("arch,causal", [("Qwen2Model", "Qwen2ForCausalLM"), ("Qwen3Model", "Qwen3ForCausalLM"),
                                         ("LlamaModel", "LlamaForCausalLM"), ("MistralModel", "MistralForCausalLM")])
def test_last_token_embedders(tmp_path, default_tokenizer_folder, arch, causal):
    import transformers

    config = tiny_config(causal)
    config.architectures = [arch]
    ref = save_model(getattr(transformers, arch), config, str(tmp_path), default_tokenizer_folder)
    ids = decoder_prompts(VOCAB)
    with Engine(str(tmp_path), dtype="float32") as engine:
        assert engine.task == "embed"
        alone = [engine.encode(input_ids=p) for p in ids]
        batch = engine.encode(input_ids=ids)
        # a longer input whose first 40 tokens are cached now
        longer = engine.encode(input_ids=ids[3] + ids[0])
        raw = engine.encode(input_ids=ids[0], normalize=False)
        engine.check_kv()
    assert longer["meta_info"]["cached_tokens"] == len(ids[3])
    for p, one, many in zip(ids, alone, batch):
        v = last_hidden(ref, p)
        check_close(one["embedding"], v / v.norm())
        check_close(many["embedding"], v / v.norm())
    v = last_hidden(ref, ids[3] + ids[0])
    check_close(longer["embedding"], v / v.norm())
    check_close(raw["embedding"], last_hidden(ref, ids[0]))


def test_is_embedding_on_a_causal_lm(tmp_path, default_tokenizer_folder):
    from transformers import Qwen2ForCausalLM

    config = tiny_config("Qwen2ForCausalLM")
    config.architectures = ["Qwen2ForCausalLM"]
    ref = save_model(Qwen2ForCausalLM, config, str(tmp_path), default_tokenizer_folder)
    ids = decoder_prompts(VOCAB)
    with Engine(str(tmp_path), dtype="float32", is_embedding=True) as engine:
        assert engine.task == "embed"
        out = engine.encode(input_ids=ids)
        with pytest.raises(ValueError, match="use encode"):
            engine.generate(input_ids=ids[0])
    for p, r in zip(ids, out):
        v = last_hidden(ref.model, p)
        check_close(r["embedding"], v / v.norm())


@pytest.mark.parametrize("arch,causal,labels", [
    ("LlamaForSequenceClassification", "LlamaForCausalLM", 1),
    ("Qwen2ForSequenceClassification", "Qwen2ForCausalLM", 3),
    ("Qwen3ForSequenceClassification", "Qwen3ForCausalLM", 1),
    ("Gemma2ForSequenceClassification", "Gemma2ForCausalLM", 2),
])
def test_sequence_classifiers(tmp_path, default_tokenizer_folder, arch, causal, labels):
    import transformers

    config = tiny_config(causal)
    config.architectures, config.num_labels = [arch], labels
    ref = save_model(getattr(transformers, arch), config, str(tmp_path), default_tokenizer_folder)
    ids = decoder_prompts(VOCAB, seed=1)
    with Engine(str(tmp_path), dtype="float32") as engine:
        batch = engine.classify(input_ids=ids)
        alone = engine.classify(input_ids=ids[2])
        scores = engine.score(input_ids=ids) if labels == 1 else None
    for i, (p, r) in enumerate(zip(ids, batch)):
        with torch.inference_mode():
            logits = ref(torch.tensor([p])).logits[0]
        want = logits if labels == 1 else torch.softmax(logits, -1)  # one label: the raw reward
        check_close(r["scores"], want)
        if scores is not None:
            assert abs(scores[i] - float(logits[0])) < 1e-4
    assert alone["scores"] == pytest.approx(batch[2]["scores"], abs=1e-5)


def test_qwen2_reward_model(tmp_path, default_tokenizer_folder):
    """Qwen2.5-Math-RM's layout: Qwen2's `model.*` and score.0 / score.2 (Linear, ReLU, Linear)."""
    from safetensors.torch import save_file
    from transformers import Qwen2Model

    config = tiny_config("Qwen2ForCausalLM")
    base = save_model(Qwen2Model, config, str(tmp_path / "base"), default_tokenizer_folder)
    torch.manual_seed(3)
    h = config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 1))
    tensors = {f"model.{k}": v.contiguous() for k, v in base.state_dict().items()}
    tensors.update({f"score.{k}": v.contiguous() for k, v in head.state_dict().items()})
    folder = tmp_path / "rm"
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    config.architectures = ["Qwen2ForRewardModel"]
    config.save_pretrained(str(folder))
    for name in (tmp_path / "base").iterdir():  # the tokenizer files save_model copied
        if name.name.startswith(("tokenizer", "special_tokens")):
            (folder / name.name).write_bytes(name.read_bytes())
    ids = decoder_prompts(VOCAB, seed=2)
    with Engine(str(folder), dtype="float32") as engine:
        assert engine.labels == ("reward",)
        rewards = engine.score(input_ids=ids)
    for p, got in zip(ids, rewards):
        with torch.inference_mode():
            want = head(last_hidden(base, p))[0]
        assert abs(got - float(want)) < 1e-4


def test_sentence_transformers_files_make_a_causal_lm_an_embedder(tmp_path, default_tokenizer_folder):
    """Qwen3-Embedding's layout: a Qwen3ForCausalLM checkpoint with modules.json (last token,
    Normalize): an embedder by default, a generator with is_embedding=False."""
    import json

    from transformers import Qwen3ForCausalLM

    config = tiny_config("Qwen3ForCausalLM")
    config.architectures = ["Qwen3ForCausalLM"]
    ref = save_model(Qwen3ForCausalLM, config, str(tmp_path), default_tokenizer_folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    ids = decoder_prompts(VOCAB, seed=4)
    with Engine(str(tmp_path), dtype="float32") as engine:
        assert engine.task == "embed"
        out = engine.encode(input_ids=ids)
    for p, r in zip(ids, out):
        v = last_hidden(ref.model, p)
        check_close(r["embedding"], v / v.norm())
    with Engine(str(tmp_path), dtype="float32", is_embedding=False) as engine:
        assert engine.task == "generate"
