"""The ROS-free DecAF library: models, attention rollout, fusion, SAM2 prompting and tracking."""
