"""select: let the model choose among options, scored from its logprobs (no sampling).

All options of one select go to the engine as one batched call that shares the prompt's cached
prefix. Three choice methods ship with sgl; a method is any callable with the same signature.

Run: python tutorials/05_select.py
"""

from __future__ import annotations

import sgl


@sgl.function
def capital(s, country, method):
    s += f"The capital of {country} is " + sgl.select(
        "city", choices=["Paris", "London", "Berlin", "Madrid"], choices_method=method
    )


@sgl.function
def sentiment(s, review):
    s += "Review: " + review + "\nSentiment (positive or negative):"
    s += sgl.gen("label", choices=[" positive", " negative"])  # gen with choices is a select


def main(max_tokens: int = 0) -> dict:
    out = {}
    for method in (sgl.token_length_normalized, sgl.greedy_token_selection,
                   sgl.unconditional_likelihood_normalized):  # fmt: skip
        st = capital.run(country="France", method=method)
        scores = st.get_meta_info("city")["normalized_prompt_logprobs"]
        print(f"{method!r:>34}: {st['city']}  (mean logprobs {[round(x, 2) for x in scores]})")
        out[repr(method)] = st["city"]
    st = sentiment.run(review="I loved every minute of it, wonderful!")
    print("sentiment:", st["label"].strip())
    out["sentiment"] = st["label"].strip()
    return out


if __name__ == "__main__":
    main()
