"""Per-input scores and input-selection strategies."""
