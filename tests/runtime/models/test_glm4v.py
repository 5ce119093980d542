"""GLM-4.1V and GLM-4.5V against transformers on tiny random checkpoints (bicubic learned
positions, conv downsample and gated merger; M-RoPE with half the head rotating, in adjacent
pairs for 4.1V's decoder; 4.5V's grouped-sigmoid MoE): prompt logprobs (float32, 1e-4) and 16
greedy tokens with one image, two images and a video whose frames follow their seconds as
Glm4vProcessor writes them; alone, through 8-token chunks (smaller than any image), batched
with text, behind a cached prefix, and a repeated image reusing its KV."""

from __future__ import annotations

import types

import pytest
import torch
from mm_fixtures import Qwen2VLReference, random_image
from sgl.runtime.multimodal.random_glm4v import GLM_IMAGE, GLM_VIDEO, save_random_glm4v
from vlm_references import check_media, check_video_batched_cached_repeated, run_media

ONE = f"A photo: {GLM_IMAGE} What is in it?"
TWO = f"First {GLM_IMAGE} then {GLM_IMAGE}: which is brighter?"
VID = f"Watch {GLM_VIDEO} and {GLM_IMAGE}: what moves?"
IMAGES = [random_image(1), random_image(2, (56, 40)), random_image(3, (33, 33))]


@pytest.fixture(scope="module", params=["dense", "moe"])
def folder(request, tmp_path_factory, default_tokenizer_folder):
    return save_random_glm4v(str(tmp_path_factory.mktemp(f"glm4v_{request.param}")), default_tokenizer_folder,
                             moe=request.param == "moe")


class Glm4vReference(Qwen2VLReference):
    """Qwen2VLReference with each <|video|> replaced by Glm4vProcessor's own
    replace_video_token text (called on a stand-in processor); video frames hold the image
    token, and mm_token_type_ids mark those inside <|begin_of_video|> ... <|end_of_video|> 2.

    transformers 5.24's Glm4vModel.get_placeholder_mask finds image and video rows both by the
    image token id, so a prompt holding both fails there ("Image features and image tokens do
    not match"); the reference takes the two masks from mm_token_type_ids instead (what its own
    get_rope_index reads), and is unchanged for prompts holding one kind."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.kinds = torch.zeros(1, 0)
        self.model.model.get_placeholder_mask = self.placeholder_mask

    def placeholder_mask(self, input_ids, inputs_embeds, image_features=None, video_features=None):
        kinds = self.kinds.to(inputs_embeds.device)
        assert kinds.shape == input_ids.shape, "the reference's masks are of its last inputs() call"
        return (kinds == 1)[..., None], (kinds == 2)[..., None]

    def inputs(self, prompt: str, images: list, videos: list) -> dict:
        from transformers.models.glm4v.processing_glm4v import Glm4vProcessor

        stand_in = types.SimpleNamespace(video_processor=types.SimpleNamespace(merge_size=2), image_token="<|image|>")
        stand_in.replace_frame_token_id = types.MethodType(Glm4vProcessor.replace_frame_token_id, stand_in)
        for v in videos:
            meta = types.SimpleNamespace(fps=v["fps"], timestamps=[i / v["fps"] for i in range(v["frames"])])
            text = Glm4vProcessor.replace_video_token(stand_in, {**v, "video_metadata": [meta]}, 0)
            prompt = prompt.replace("<|video|>", text.replace("<|image|>", "\0"), 1)
        enc = super().inputs(prompt.replace("\0", ""), images, [])
        ids = self.tokenizer(prompt.replace("\0", "<|image|>"))["input_ids"]
        counts = iter([int(g.prod()) // self.merge for g in enc.get("image_grid_thw", [])])
        start, end = self.tokenizer.convert_tokens_to_ids(["<|begin_of_video|>", "<|end_of_video|>"])
        expanded: list[int] = []
        kinds: list[int] = []
        inside = False
        for t in ids:
            inside = (inside or t == start) and t != end
            if t != self.image_token:
                expanded.append(t)
                kinds.append(0)
            elif inside:  # one frame token per "\0": the video's tokens come one by one
                expanded.append(t)
                kinds.append(2)
            else:
                n = next(counts)
                expanded += [t] * n
                kinds += [1] * n
        if videos:
            enc["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for v in videos])
            enc["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in videos])
        self.kinds = torch.tensor([kinds])
        return {**enc, "input_ids": torch.tensor([expanded]), "mm_token_type_ids": self.kinds}


@pytest.fixture(scope="module")
def reference(folder):
    return Glm4vReference(folder)


@pytest.mark.parametrize("case", ["one", "two", "video"])
def test_parity_alone_and_chunked(engine, chunked, reference, video, case):
    prompt, images, vid = {"one": (ONE, IMAGES[:1], None), "two": (TWO, IMAGES[1:], None),
                           "video": (VID, IMAGES[:1], video)}[case]
    for e in (engine, chunked):
        e.flush_cache()
        check_media(e, run_media(e, prompt, images, vid), reference, prompt, images, vid)
        e.check_kv()


def test_batched_cached_prefix_and_repeated_image(engine, reference, video):
    check_video_batched_cached_repeated(engine, reference, (ONE, IMAGES[:1]), (VID, IMAGES[1:2]), video, 60)


def test_placeholders(engine):
    """What chat templates and OpenAI parts write for an image and a video: GLM's own tokens."""
    media, tok = engine._media, engine.tokenizer
    assert (media.placeholder(tok, "image"), media.placeholder(tok, "video")) == (GLM_IMAGE, GLM_VIDEO)


def test_video_rules():
    """The ported Glm4vVideoProcessor resize (the area bound counts every frame) and its errors."""
    from sgl.runtime.models.glm4v import video_size
    from transformers.models.glm4v.video_processing_glm4v import smart_resize

    for frames, h, w in [(4, 32, 40), (2, 7, 90), (16, 480, 640), (3, 100, 30)]:
        assert video_size(frames, h, w, 2, 28, 112 * 112, 28 * 28 * 2 * 300) == \
            smart_resize(frames, h, w, 2, 28, 112 * 112, 28 * 28 * 2 * 300)
    with pytest.raises(ValueError, match="at least 2"):
        video_size(1, 32, 32, 2, 8, 256, 4096)
