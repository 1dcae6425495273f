"""Models the study ships with: the digits CNN and MiniLM (`picojoule.models.minilm`)."""
