"""Deep-learning models: lesion detector and low-dose CT denoiser (no Qt)."""
