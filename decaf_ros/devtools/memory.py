"""Process memory probes and row comparisons shared by the benchmarks.

Peak memory is the kernel's RSS high-water mark (Linux VmHWM), which can be reset to the
current RSS so that a measurement window sees only its own peak; where /proc is missing or
the reset is refused, ``ru_maxrss`` (the process-lifetime peak) stands in.
"""
from __future__ import annotations

import resource

import torch


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _lifetime_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size (MiB); ru_maxrss where /proc is unavailable."""
    try:
        return _status_kb("VmRSS") / 1024
    except (OSError, KeyError):
        return _lifetime_peak_mb()


def reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak_mb() -> float:
    """RSS high-water mark (MiB) since the last reset (process lifetime if resets fail)."""
    try:
        return _status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        return _lifetime_peak_mb()


def rel_diff(row: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max elementwise relative difference, max abs difference / max |ref|).

    Computed in fp64 so neither input's precision is lost (rows are small: (B, L)).
    """
    row, ref = row.double(), ref.double()
    diff = (row - ref).abs()
    elementwise = float((diff / ref.abs().clamp_min(1e-30)).max())
    return elementwise, float(diff.max() / ref.abs().max().clamp_min(1e-30))
