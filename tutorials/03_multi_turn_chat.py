"""A multi-turn chat: roles use the model's own chat template; messages() records the turns.

Run: python tutorials/03_multi_turn_chat.py
"""

from __future__ import annotations

import sgl


@sgl.function
def chat(s, questions):
    s += sgl.system("You are a helpful assistant. Answer in one sentence.")
    for i, q in enumerate(questions):
        s += sgl.user(q)
        # a role as a context manager works too:
        with s.assistant():
            s += sgl.gen(f"answer_{i}")


def main(max_tokens: int = 48) -> dict:
    state = chat.run(
        questions=["What is the capital of France?", "What is it famous for?"],
        max_new_tokens=max_tokens,
        temperature=0,
    )
    for m in state.messages():
        print(f"{m['role']:>9}: {m['content']}")
    return {"messages": state.messages(), "text": state.text()}


if __name__ == "__main__":
    main()
