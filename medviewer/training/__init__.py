"""Training-data engine and training loops (no Qt)."""
