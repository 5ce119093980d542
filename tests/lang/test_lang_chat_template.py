"""Chat templates: derived from a tokenizer's Jinja template, and SGLang's named ones."""

from __future__ import annotations

import jinja2
import pytest
from sgl.chat_template import from_tokenizer, get_chat_template, match_chat_template

SMOL = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
    " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
)


class FakeTokenizer:
    def __init__(self, template: str, bos: str = "", add_bos: bool = False) -> None:
        self.chat_template = template
        self.bos_token = bos
        self.add_bos_token = add_bos

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        def raise_exception(msg):
            raise jinja2.TemplateError(msg)

        return jinja2.Environment().from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
            raise_exception=raise_exception,
        )  # fmt: skip


def test_smollm_template_with_default_system_prompt():
    t = from_tokenizer(FakeTokenizer(SMOL))
    assert t.role_prefix_and_suffix["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    assert t.role_prefix_and_suffix["assistant"] == ("<|im_start|>assistant\n", "<|im_end|>\n")
    assert t.role_prefix_and_suffix["system"] == ("<|im_start|>system\n", "<|im_end|>\n")
    assert t.default_system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert t.stop_str == ("<|im_end|>",)


def test_llama3_style_template_keeps_bos_unless_tokenizer_adds_it():
    t = from_tokenizer(FakeTokenizer(LLAMA3, bos="<|begin_of_text|>"))
    assert t.role_prefix_and_suffix["system"][0] == "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    assert t.role_prefix_and_suffix["user"] == ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")
    assert t.default_system_prompt is None and t.stop_str == ("<|eot_id|>",)
    t2 = from_tokenizer(FakeTokenizer(LLAMA3, bos="<|begin_of_text|>", add_bos=True))
    assert t2.role_prefix_and_suffix["system"][0] == "<|start_header_id|>system<|end_header_id|>\n\n"


def test_template_without_system_role():
    t = from_tokenizer(FakeTokenizer(GEMMA, bos="<bos>"))
    assert t.role_prefix_and_suffix["system"] == ("", "")
    assert t.role_prefix_and_suffix["assistant"] == ("<start_of_turn>model\n", "<end_of_turn>\n")


def test_no_template_is_a_clear_error():
    with pytest.raises(ValueError, match="chat_template"):
        from_tokenizer(FakeTokenizer(""))


@pytest.mark.parametrize(
    "path, name",
    [
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-instruct"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama-2-chat"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen"),
        ("google/gemma-2-9b-it", "gemma-it"),
        ("lmsys/vicuna-7b-v1.5", "vicuna_v1.1"),
        ("some/base-model", "default"),
    ],
)
def test_match_by_model_path(path, name):
    assert match_chat_template(path).name == name


def test_named_templates():
    d = get_chat_template("default")
    assert d.get_prefix_and_suffix("user", []) == ("USER:", "\n")
    llama2 = get_chat_template("llama-2-chat")
    # the first system message folds into the first [INST]
    assert llama2.get_prefix_and_suffix("system", []) == ("[INST] <<SYS>>\n", "\n<</SYS>>\n\n")
    assert llama2.get_prefix_and_suffix("user", [{"role": "system", "content": "x"}]) == ("", " [/INST]")
    assert llama2.get_prefix_and_suffix("user", []) == ("[INST] ", " [/INST]")
    with pytest.raises(ValueError, match="unknown chat template"):
        get_chat_template("nope")
