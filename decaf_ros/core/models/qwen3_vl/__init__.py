"""Qwen3-VL: adapter, tiny random builder."""
