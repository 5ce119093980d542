"""Few-shot QA over a batch: every program shares the 5-shot header, computed once.

`run_batch` traces the program's constant prefix, caches it in the engine's radix cache, then
runs the programs concurrently; the engine batches them and reuses the cached header.

Run: python tutorials/02_few_shot_batch.py
"""

from __future__ import annotations

import sgl

SHOTS = [("France", "Paris"), ("England", "London"), ("Australia", "Canberra"),
         ("Switzerland", "Bern"), ("South Korea", "Seoul")]  # fmt: skip
HEADER = "Answer with the capital city.\n\n" + "".join(
    f"Question: What is the capital of {c}?\nAnswer: {a}\n\n" for c, a in SHOTS
)


@sgl.function
def capital(s, country):
    s += HEADER
    s += "Question: What is the capital of " + country + "?\nAnswer:"
    s += sgl.gen("answer", stop="\n")


def main(max_tokens: int = 8, countries: list[str] | None = None) -> dict:
    countries = countries or ["Japan", "Italy", "Egypt", "Canada", "Peru", "Norway", "Kenya", "India"]
    states = capital.run_batch(
        [{"country": c} for c in countries], max_new_tokens=max_tokens, temperature=0, progress_bar=True
    )
    answers = {c: st["answer"].strip() for c, st in zip(countries, states)}
    for c, a in answers.items():
        print(f"{c:>10} -> {a}")
    return answers


if __name__ == "__main__":
    main()
