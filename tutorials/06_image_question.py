"""Questions about an image: `sgl.image` in a user turn, then several questions forked from it.

The image is encoded once and its KV cached: the forked questions reuse the image's prefix
(the radix cache keys it by the image's pixels), so asking more costs only the questions.

Run: python tutorials/06_image_question.py [image.png]
(with a real vision-language model in the Hugging Face cache, e.g. Qwen/Qwen2-VL-2B-Instruct,
it uses that; otherwise a tiny random one made on the fly, which answers nonsense, fast)
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import sgl
from PIL import Image


@sgl.function
def image_qa(s, image, questions):
    s += sgl.user(sgl.image(image) + "Look at this picture.")
    s += sgl.assistant("I see it.")
    forks = s.fork(len(questions))
    for f, q in zip(forks, questions):
        f += sgl.user(q)
        f += sgl.assistant(sgl.gen("answer", stop="\n"))
    forks.join()  # s["answer"] is the list of answers, in question order


def gradient(path: str) -> str:
    """A small picture: a colour gradient."""
    y, x = np.mgrid[0:96, 0:128]
    rgb = np.stack([x * 2, y * 2, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def main(image: str | None = None, max_tokens: int = 24) -> dict:
    from sgl.runtime.multimodal.random_checkpoints import installed_or_tiny

    work = tempfile.mkdtemp(prefix="sgl-tutorial-")
    model = installed_or_tiny("image", os.path.join(work, "model"))
    image = image or gradient(os.path.join(work, "gradient.png"))
    runtime = sgl.Runtime(model_path=model)
    try:
        questions = ["What colors do you see?", "Is it a photo or a drawing?", "Describe it in one word."]
        state = image_qa.run(image=image, questions=questions, max_new_tokens=max_tokens, temperature=0,
                             backend=runtime)
        for q, a in zip(questions, state["answer"]):
            print(f"Q: {q}\nA: {a}")
        info = runtime.get_server_info()
        print("vision encoder runs:", info["vision_encoder_runs"])  # one image, encoded once
        return {"answers": state["answer"], "encoder_runs": info["vision_encoder_runs"]}
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
