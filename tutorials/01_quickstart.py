"""Quickstart: a program, a generation, a variable, and streaming.

Run: python tutorials/01_quickstart.py   (uses the default model in this process)
"""

from __future__ import annotations

import sgl


@sgl.function
def qa(s, question):
    # roles wrap text in the model's chat template; gen stores its output as "answer"
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer"))


def main(max_tokens: int = 32) -> dict:
    # No backend set: the first run starts the in-process engine with the default model.
    state = qa.run(question="What is the capital of France?", max_new_tokens=max_tokens, temperature=0)
    print("answer:", state["answer"])  # blocks until the variable exists
    print("full text:\n" + state.text())

    # Streaming: pieces arrive as they are generated.
    stream = qa.run(question="Name a primary color.", max_new_tokens=max_tokens, temperature=0, stream=True)
    pieces = []
    for piece in stream.text_iter("answer"):
        pieces.append(piece)
        print(piece, end="", flush=True)
    print()
    return {"answer": state["answer"], "streamed": "".join(pieces), "final": stream["answer"]}


if __name__ == "__main__":
    main()
