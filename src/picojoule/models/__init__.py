"""Models the study ships with: the digits CNN and MiniLM (`picojoule.models.minilm`); and
`picojoule.models.spec`, the one loader behind every command's `--model` (digits, minilm,
smollm2, st:DIR, hf:DIR, pkg.mod:build)."""
