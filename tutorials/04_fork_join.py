"""fork / join: explore several continuations in parallel from one shared prefix.

`s.fork(n)` commits the text so far (one prefill), then each child continues on the cached
prefix; `join()` gathers each child's variables into lists in the parent.

Run: python tutorials/04_fork_join.py
"""

from __future__ import annotations

import sgl


@sgl.function
def tips(s, topic, num_tips=3):
    s += f"Here are {num_tips} short tips about {topic}, one sentence each.\n"
    forks = s.fork(num_tips)
    forks += lambda i: f"Tip {i + 1}:" + sgl.gen("tip", stop="\n")
    forks.join()  # st["tip"] is now a list, in child order
    s += "In summary, the most important tip is:" + sgl.gen("summary", stop="\n")


def main(max_tokens: int = 24) -> dict:
    state = tips.run(topic="staying healthy", num_tips=4, max_new_tokens=max_tokens, temperature=0)
    for i, t in enumerate(state["tip"]):
        print(f"tip {i + 1}:{t}")
    print("summary:", state["summary"])
    return {"tips": state["tip"], "summary": state["summary"]}


if __name__ == "__main__":
    main()
