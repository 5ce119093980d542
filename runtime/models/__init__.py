"""Model registry: `config.architectures[0]` -> model class, imported lazily.

`python -m sgl.runtime.models` prints the table of supported architectures (docs/models.md)."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

# architecture name -> (module in runtime/models, class name, example hub id)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM", "meta-llama/Llama-3.1-8B-Instruct"),
    "MistralForCausalLM": ("llama", "MistralForCausalLM", "mistralai/Mistral-7B-Instruct-v0.3"),
    "Qwen2ForCausalLM": ("llama", "Qwen2ForCausalLM", "Qwen/Qwen2.5-7B-Instruct"),
    "Qwen3ForCausalLM": ("llama", "Qwen3ForCausalLM", "Qwen/Qwen3-8B"),
    "GemmaForCausalLM": ("gemma", "GemmaForCausalLM", "google/gemma-7b-it"),
    "Gemma2ForCausalLM": ("gemma", "Gemma2ForCausalLM", "google/gemma-2-9b-it"),
    "Gemma3ForCausalLM": ("gemma", "Gemma3ForCausalLM", "google/gemma-3-1b-it"),
    "Phi3ForCausalLM": ("llama", "Phi3ForCausalLM", "microsoft/Phi-3-mini-128k-instruct"),
    "PhiForCausalLM": ("phi", "PhiForCausalLM", "microsoft/phi-2"),
    "GraniteForCausalLM": ("llama", "GraniteForCausalLM", "ibm-granite/granite-3.1-8b-instruct"),
    "Olmo2ForCausalLM": ("llama", "Olmo2ForCausalLM", "allenai/OLMo-2-1124-7B-Instruct"),
    "OlmoForCausalLM": ("llama", "OlmoForCausalLM", "allenai/OLMo-7B-0724-hf"),
    "Starcoder2ForCausalLM": ("llama", "Starcoder2ForCausalLM", "bigcode/starcoder2-7b"),
    "GPT2LMHeadModel": ("gpt2", "GPT2LMHeadModel", "openai-community/gpt2"),
    "GPTBigCodeForCausalLM": ("gpt2", "GPTBigCodeForCausalLM", "bigcode/gpt_bigcode-santacoder"),
    "GPTNeoXForCausalLM": ("gpt_neox", "GPTNeoXForCausalLM", "EleutherAI/pythia-1.4b"),
    "PersimmonForCausalLM": ("gpt_neox", "PersimmonForCausalLM", "adept/persimmon-8b-chat"),
    "GPTJForCausalLM": ("phi", "GPTJForCausalLM", "EleutherAI/gpt-j-6b"),
    "CohereForCausalLM": ("llama", "CohereForCausalLM", "CohereForAI/c4ai-command-r-v01"),
    "Cohere2ForCausalLM": ("llama", "Cohere2ForCausalLM", "CohereForAI/c4ai-command-r7b-12-2024"),
    "StableLmForCausalLM": ("llama", "StableLmForCausalLM", "stabilityai/stablelm-2-1_6b-chat"),
    "GlmForCausalLM": ("llama", "GlmForCausalLM", "THUDM/glm-4-9b-chat-hf"),
    "Glm4ForCausalLM": ("llama", "Glm4ForCausalLM", "THUDM/GLM-4-9B-0414"),
    "Exaone4ForCausalLM": ("llama", "Exaone4ForCausalLM", "LGAI-EXAONE/EXAONE-4.0-1.2B"),
    "NemotronForCausalLM": ("llama", "NemotronForCausalLM", "nvidia/Minitron-8B-Base"),
    "ArceeForCausalLM": ("llama", "ArceeForCausalLM", "arcee-ai/AFM-4.5B"),
    "SmolLM3ForCausalLM": ("llama", "SmolLM3ForCausalLM", "HuggingFaceTB/SmolLM3-3B"),
    "Ernie4_5ForCausalLM": ("llama", "Ernie4_5ForCausalLM", "baidu/ERNIE-4.5-0.3B-PT"),
    "FalconForCausalLM": ("falcon", "FalconForCausalLM", "tiiuae/falcon-7b-instruct"),
    "OPTForCausalLM": ("opt", "OPTForCausalLM", "facebook/opt-1.3b"),
    "BloomForCausalLM": ("bloom", "BloomForCausalLM", "bigscience/bloomz-560m"),
    "MptForCausalLM": ("mpt", "MptForCausalLM", "mosaicml/mpt-7b-instruct"),
    "DeepseekV2ForCausalLM": ("deepseek", "DeepseekV2ForCausalLM", "deepseek-ai/DeepSeek-V2-Lite-Chat"),
    "DeepseekV3ForCausalLM": ("deepseek", "DeepseekV3ForCausalLM", "deepseek-ai/DeepSeek-V3"),
    "MiniCPM3ForCausalLM": ("deepseek", "MiniCPM3ForCausalLM", "openbmb/MiniCPM3-4B"),
    "MixtralForCausalLM": ("moe_llama", "MixtralForCausalLM", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    "Qwen2MoeForCausalLM": ("moe_llama", "Qwen2MoeForCausalLM", "Qwen/Qwen1.5-MoE-A2.7B-Chat"),
    "Qwen3MoeForCausalLM": ("moe_llama", "Qwen3MoeForCausalLM", "Qwen/Qwen3-30B-A3B"),
    "OlmoeForCausalLM": ("moe_llama", "OlmoeForCausalLM", "allenai/OLMoE-1B-7B-0924-Instruct"),
    "GraniteMoeForCausalLM": ("moe_llama", "GraniteMoeForCausalLM", "ibm-granite/granite-3.1-3b-a800m-instruct"),
    "GraniteMoeSharedForCausalLM": ("moe_llama", "GraniteMoeSharedForCausalLM",
                                    "ibm-research/moe-7b-1b-active-shared-experts"),
    "PhimoeForCausalLM": ("moe_llama", "PhimoeForCausalLM", "microsoft/Phi-3.5-MoE-instruct"),
    "PhiMoEForCausalLM": ("moe_llama", "PhiMoEForCausalLM", "microsoft/Phi-3.5-MoE-instruct"),
    "Ernie4_5_MoeForCausalLM": ("moe_llama", "Ernie4_5_MoeForCausalLM", "baidu/ERNIE-4.5-21B-A3B-PT"),
    "ErnieMoeForCausalLM": ("moe_llama", "ErnieMoeForCausalLM", "baidu/ERNIE-4.5-21B-A3B-PT"),
    "Glm4MoeForCausalLM": ("moe_llama", "Glm4MoeForCausalLM", "zai-org/GLM-4.5-Air"),
    "AriaTextForCausalLM": ("moe_llama", "AriaTextForCausalLM", "rhymes-ai/Aria"),
    "Llama4ForCausalLM": ("llama4", "Llama4ForCausalLM", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    "DbrxForCausalLM": ("dbrx", "DbrxForCausalLM", "databricks/dbrx-instruct"),
    "GptOssForCausalLM": ("gpt_oss", "GptOssForCausalLM", "openai/gpt-oss-20b"),
    "GPTOSSForCausalLM": ("gpt_oss", "GPTOSSForCausalLM", "openai/gpt-oss-20b"),
    "LlavaForConditionalGeneration": ("llava", "LlavaForConditionalGeneration", "llava-hf/llava-1.5-7b-hf"),
    "LlavaNextForConditionalGeneration": ("llava_next", "LlavaNextForConditionalGeneration",
                                          "llava-hf/llava-v1.6-mistral-7b-hf"),
    "LlavaNextVideoForConditionalGeneration": ("llava_next_video", "LlavaNextVideoForConditionalGeneration",
                                               "llava-hf/LLaVA-NeXT-Video-7B-hf"),
    "LlavaOnevisionForConditionalGeneration": ("llava_onevision", "LlavaOnevisionForConditionalGeneration",
                                               "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    "Qwen2VLForConditionalGeneration": ("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen/Qwen2-VL-2B-Instruct"),
    "Qwen2_5_VLForConditionalGeneration": ("qwen2_vl", "Qwen2_5_VLForConditionalGeneration",
                                           "Qwen/Qwen2.5-VL-3B-Instruct"),
    "InternVLForConditionalGeneration": ("internvl", "InternVLForConditionalGeneration", "OpenGVLab/InternVL3-1B-hf"),
    "Mistral3ForConditionalGeneration": ("pixtral", "Mistral3ForConditionalGeneration",
                                         "mistralai/Mistral-Small-3.1-24B-Instruct-2503"),
    "PixtralForConditionalGeneration": ("llava", "PixtralForConditionalGeneration", "mistral-community/pixtral-12b"),
    "Llama4ForConditionalGeneration": ("llama4", "Llama4ForConditionalGeneration",
                                       "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    "Qwen3VLForConditionalGeneration": ("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen/Qwen3-VL-2B-Instruct"),
    "Qwen3VLMoeForConditionalGeneration": ("qwen3_vl", "Qwen3VLMoeForConditionalGeneration",
                                           "Qwen/Qwen3-VL-30B-A3B-Instruct"),
    "Gemma3ForConditionalGeneration": ("gemma3_vl", "Gemma3ForConditionalGeneration", "google/gemma-3-4b-it"),
    "PaliGemmaForConditionalGeneration": ("paligemma", "PaliGemmaForConditionalGeneration",
                                          "google/paligemma2-3b-mix-224"),
    "Phi4MultimodalForCausalLM": ("phi4mm", "Phi4MultimodalForCausalLM", "microsoft/Phi-4-multimodal-instruct"),
    "Qwen2AudioForConditionalGeneration": ("qwen2_audio", "Qwen2AudioForConditionalGeneration",
                                           "Qwen/Qwen2-Audio-7B-Instruct"),
    "Blip2ForConditionalGeneration": ("blip2", "Blip2ForConditionalGeneration", "Salesforce/blip2-opt-2.7b"),
    "FuyuForCausalLM": ("fuyu", "FuyuForCausalLM", "adept/fuyu-8b"),
    "JanusForConditionalGeneration": ("janus", "JanusForConditionalGeneration", "deepseek-community/Janus-Pro-1B"),
    "Glm4vForConditionalGeneration": ("glm4v", "Glm4vForConditionalGeneration", "zai-org/GLM-4.1V-9B-Thinking"),
    "Glm4vMoeForConditionalGeneration": ("glm4v", "Glm4vMoeForConditionalGeneration", "zai-org/GLM-4.5V"),
    "MllamaForConditionalGeneration": ("mllama", "MllamaForConditionalGeneration",
                                       "meta-llama/Llama-3.2-11B-Vision-Instruct"),
    "ChameleonForConditionalGeneration": ("chameleon", "ChameleonForConditionalGeneration", "facebook/chameleon-7b"),
    "Idefics3ForConditionalGeneration": ("idefics3", "Idefics3ForConditionalGeneration",
                                         "HuggingFaceM4/Idefics3-8B-Llama3"),
    "SmolVLMForConditionalGeneration": ("idefics3", "SmolVLMForConditionalGeneration",
                                        "HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
    "AriaForConditionalGeneration": ("aria", "AriaForConditionalGeneration", "rhymes-ai/Aria"),
    # pooling models (task != "generate"): embedders, classifiers, rerankers, reward models
    "BertModel": ("bert", "BertModel", "sentence-transformers/all-MiniLM-L6-v2"),
    "BertForSequenceClassification": ("bert", "BertForSequenceClassification",
                                      "cross-encoder/ms-marco-MiniLM-L6-v2"),
    "RobertaModel": ("roberta", "RobertaModel", "sentence-transformers/all-distilroberta-v1"),
    "RobertaForSequenceClassification": ("roberta", "RobertaForSequenceClassification",
                                         "cardiffnlp/twitter-roberta-base-sentiment-latest"),
    "XLMRobertaModel": ("roberta", "XLMRobertaModel", "BAAI/bge-m3"),
    "XLMRobertaForSequenceClassification": ("roberta", "XLMRobertaForSequenceClassification",
                                            "BAAI/bge-reranker-v2-m3"),
    "LlamaModel": ("decoder_pooling", "LlamaModel", "intfloat/e5-mistral-7b-instruct"),
    "MistralModel": ("decoder_pooling", "MistralModel", "Salesforce/SFR-Embedding-Mistral"),
    "Qwen2Model": ("decoder_pooling", "Qwen2Model", "Alibaba-NLP/gte-Qwen2-1.5B-instruct"),
    "Qwen3Model": ("decoder_pooling", "Qwen3Model", "Qwen/Qwen3-Embedding-0.6B"),
    "LlamaForSequenceClassification": ("decoder_pooling", "LlamaForSequenceClassification",
                                       "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"),
    "Qwen2ForSequenceClassification": ("decoder_pooling", "Qwen2ForSequenceClassification",
                                       "jason9693/Qwen2.5-1.5B-apeach"),
    "Qwen3ForSequenceClassification": ("decoder_pooling", "Qwen3ForSequenceClassification",
                                       "Skywork/Skywork-Reward-V2-Qwen3-0.6B"),
    "Gemma2ForSequenceClassification": ("decoder_pooling", "Gemma2ForSequenceClassification",
                                        "Skywork/Skywork-Reward-Gemma-2-27B-v0.2"),
    "Qwen2ForRewardModel": ("decoder_pooling", "Qwen2ForRewardModel", "Qwen/Qwen2.5-Math-RM-72B"),
    "CLIPModel": ("clip", "CLIPModel", "openai/clip-vit-base-patch32"),
}


# architecture name -> a class registered at run time (`register_model`): out-of-tree models
_REGISTERED: dict[str, type[nn.Module]] = {}


def register_model(architecture: str, cls: type[nn.Module]) -> None:
    """Serves checkpoints whose `architectures[0]` is `architecture` with `cls` (a model built
    from runtime/layers, as the files here are), as vLLM's ModelRegistry.register_model does."""
    _REGISTERED[architecture] = cls


def get_model_class(architecture: str) -> type[nn.Module]:
    if architecture in _REGISTERED:
        return _REGISTERED[architecture]
    if architecture not in REGISTRY:
        raise ValueError(f"architecture {architecture!r} is not supported; supported: "
                         f"{', '.join(sorted(REGISTRY))}")
    module, name, _ = REGISTRY[architecture]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


# One architecture, several classes: (architecture, the vision tower's kind) -> (module, class),
# as in REGISTRY. LLaVA whose vision_config is Pixtral is built by a class of its own.
TOWER_VARIANTS = {
    ("LlavaForConditionalGeneration", "pixtral"): ("pixtral", "LlavaPixtralForConditionalGeneration"),
    ("PixtralForConditionalGeneration", "pixtral"): ("pixtral", "LlavaPixtralForConditionalGeneration"),
}


def model_class_for(config: Any) -> type[nn.Module]:
    """The class the loader builds for a checkpoint (a ModelConfig): its architecture's, or the
    variant its vision tower asks for (TOWER_VARIANTS)."""
    mm = config.multimodal
    kind = mm.tower.kind if mm is not None and mm.tower is not None else ""
    variant = TOWER_VARIANTS.get((config.architecture, kind))
    if variant is None:
        return get_model_class(config.architecture)
    return getattr(importlib.import_module(f"{__name__}.{variant[0]}"), variant[1])


# Families SGLang or vLLM serve that exist only as remote code (trust_remote_code): none is
# registered until transformers implements it, so there is a reference to test against.
REMOTE_CODE_ONLY = ("Kimi-VL", "DeepSeek-VL2", "MiniCPM-V", "MiniCPM-o", "NVILA", "DotsVLM", "InternVLChatModel",
                    "Phi-3-Vision", "Molmo", "NVLM-D", "H2OVL", "Ultravox")


def markdown_table() -> str:
    """docs/models.md: every registered architecture, its model file, its shared layers of note
    (a model class's `features`: "MoE", "MLA") and an example model id."""
    lines = [
        "# Supported models",
        "",
        "Generated from `sgl.runtime.models.REGISTRY` by `python -m sgl.runtime.models > docs/models.md`;",
        "`tests/runtime/models/test_model_zoo.py` fails when this file is out of date, and checks every",
        "architecture against transformers on a tiny random checkpoint (those taking images, video or",
        "audio in `tests/runtime/models/test_<family>.py`, with real processors configured small).",
        "`inputs` are what a prompt may hold; `task` is what the model gives back (`generate`: text).",
        "A vision-language model serves as an embedder with `is_embedding=True` (its last token, normalized:",
        "GME-Qwen2-VL is `Qwen2VLForConditionalGeneration` so served); `CLIPModel` embeds a text or an image.",
        "",
        "| architecture (`config.json` `architectures`) | model file | task | inputs | layers | example model id |",
        "|---|---|---|---|---|---|",
    ]
    for arch, (module, _, example) in sorted(REGISTRY.items(), key=lambda kv: (kv[1][0], kv[0])):
        cls = get_model_class(arch)
        features = ", ".join(getattr(cls, "features", ()))
        inputs = ", ".join(("text", *getattr(cls, "modalities", ())))  # a class names its media inputs
        lines.append(f"| `{arch}` | `runtime/models/{module}.py` | {getattr(cls, 'task', 'generate')} | {inputs} | "
                     f"{features} | [`{example}`](https://huggingface.co/{example}) |")
    lines += ["", "## Not yet supported", "",
              "Listed by SGLang or vLLM, but only as remote code (no transformers implementation to test against):",
              ", ".join(f"`{name}`" for name in REMOTE_CODE_ONLY) + "."]
    return "\n".join(lines) + "\n"
