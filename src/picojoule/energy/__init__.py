"""picojoule.energy (being assembled)."""
