"""InternVL3 (hf ``internvl`` checkpoints): adapter, tiny random builder."""
