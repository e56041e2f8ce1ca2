#!/usr/bin/env python3
"""Print constraints.txt for the current environment: every distribution pip installed, pinned.

Distributions without pip's INSTALLER record are skipped: those are the egg-info folders the ROS
wheels and CMake installs leave behind (rclpy, std_msgs, ..., decaf_ros), which are not
installable names on any index.

Usage: .venv/bin/python scripts/freeze_constraints.py > constraints.txt
"""
from importlib import metadata

SKIP = {"pip", "decaf-ros"}
HEADER = """\
# Exact versions of every package pip installs for decaf_ros (transitive ones included).
# Applied by requirements.txt (-c). Regenerate after changing requirements.txt:
#   .venv/bin/python scripts/freeze_constraints.py > constraints.txt"""


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pinned_lines() -> list[str]:
    pins = {}
    for dist in metadata.distributions():
        if (dist.read_text("INSTALLER") or "").strip() != "pip":
            continue
        name = _normalise(dist.metadata["Name"])
        if name not in SKIP:
            pins[name] = f"{name}=={dist.version}"
    return [pins[name] for name in sorted(pins)]


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(pinned_lines()))
