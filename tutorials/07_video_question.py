"""A question about a video: `sgl.video(path, num_frames)` samples frames evenly over the clip
and the model sees them as one video (its own video placeholder, M-RoPE time positions with
Qwen2-VL).

Run: python tutorials/07_video_question.py [clip.mp4]
(without a clip it writes a short one with PyAV, `pip install av`; with a real video model in
the Hugging Face cache, e.g. Qwen/Qwen2-VL-2B-Instruct, it uses that, otherwise a tiny random
one made on the fly, which answers nonsense, fast)
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import sgl


@sgl.function
def video_qa(s, path, question, num_frames=4):
    s += sgl.user(sgl.video(path, num_frames) + question)
    s += sgl.assistant(sgl.gen("answer", stop="\n"))


def moving_square(path: str, frames: int = 16) -> str:
    """A 1-second clip (H.264) of a white square moving right on black."""
    import av

    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=frames)
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        for i in range(frames):
            rgb = np.zeros((64, 96, 3), dtype=np.uint8)
            rgb[24:40, 4 * i : 4 * i + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def main(path: str | None = None, max_tokens: int = 24) -> dict:
    from sgl.runtime.multimodal.random_checkpoints import installed_or_tiny

    work = tempfile.mkdtemp(prefix="sgl-tutorial-")
    model = installed_or_tiny("video", os.path.join(work, "model"))
    path = path or moving_square(os.path.join(work, "square.mp4"))
    runtime = sgl.Runtime(model_path=model)
    try:
        state = video_qa.run(path=path, question="Which way does the square move?", max_new_tokens=max_tokens,
                             temperature=0, backend=runtime)
        print("answer:", state["answer"])
        return {"answer": state["answer"], "error": state.error()}
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
