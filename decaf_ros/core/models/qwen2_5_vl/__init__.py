"""Qwen2.5-VL and Qwen2-VL (one token layout): adapter, tiny random builders."""
