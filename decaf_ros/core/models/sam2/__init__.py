"""SAM2 video segmentation: the segmenter, tiny random builder."""
