"""LLaVA-OneVision (hf checkpoints): adapter, tiny random builder."""
