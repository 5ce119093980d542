"""Building blocks shared by every model file: linear, norms, rotary, activations, attention,
embeddings and the logits processor."""
