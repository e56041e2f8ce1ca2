"""Result -> ROS messages: targets, centroid, markers, status. Pure functions, no node state."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from decaf_ros.core.geometry import mask_bbox, mask_centroid
from decaf_ros.core.overlay import PALETTE
from decaf_ros.msg import Status, Target, TargetArray
from decaf_ros.ros.image_conversion import array_to_image

STATE_NAMES = {Status.IDLE: "IDLE", Status.LOADING: "LOADING", Status.GROUNDING: "GROUNDING",
               Status.TRACKING: "TRACKING", Status.ERROR: "ERROR"}
MARKER_NS = "decaf_targets"


@dataclass(frozen=True)
class TargetInfo:
    """One target on one frame, with its 3D centroid (None when not computable) and why not."""

    target_id: int
    score: float
    mask: np.ndarray  # (H, W) bool
    xyz: tuple[float, float, float] | None
    reason_3d: str = ""  # why xyz is None; empty when it is valid


def _bbox_roi(mask: np.ndarray) -> RegionOfInterest:
    roi = RegionOfInterest(do_rectify=False)
    box = mask_bbox(mask)
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        roi.x_offset, roi.y_offset = x0, y0
        roi.width, roi.height = x1 - x0 + 1, y1 - y0 + 1
    return roi


def target_msg(info: TargetInfo, header: Header, goal_id: int, goal: str, label: str,
               with_mask: bool = True) -> Target:
    msg = Target(goal_id=goal_id, goal=goal, target_id=info.target_id, label=label, score=float(info.score))
    centroid = mask_centroid(info.mask)
    if centroid is not None:
        msg.centroid_u, msg.centroid_v = float(centroid[0]), float(centroid[1])
    msg.bbox = _bbox_roi(info.mask)
    msg.area_px = int(np.count_nonzero(info.mask))
    if info.xyz is not None:
        msg.centroid_3d = Point(x=float(info.xyz[0]), y=float(info.xyz[1]), z=float(info.xyz[2]))
        msg.centroid_3d_valid = True
    else:
        msg.centroid_3d_reason = info.reason_3d
    if with_mask:
        msg.mask = array_to_image(info.mask, "mono8", header)
    return msg


def target_array_msg(targets: list[TargetInfo], header: Header, goal_id: int, goal: str,
                     label: str, stage: int, with_masks: bool = True) -> TargetArray:
    return TargetArray(header=header, goal_id=goal_id, goal=goal, stage=stage,
                       targets=[target_msg(t, header, goal_id, goal, label, with_masks) for t in targets])


def centroid_msg(targets: list[TargetInfo], header: Header) -> PointStamped | None:
    """The best-scoring target with a valid 3D centroid, or None."""
    valid = [t for t in targets if t.xyz is not None]
    if not valid:
        return None
    best = max(valid, key=lambda t: t.score)
    x, y, z = best.xyz  # type: ignore[misc]
    return PointStamped(header=header, point=Point(x=float(x), y=float(y), z=float(z)))


def _color(index: int, alpha: float = 1.0) -> ColorRGBA:
    r, g, b = PALETTE[index % len(PALETTE)]
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=alpha)


def markers_msg(targets: list[TargetInfo], header: Header, label: str, scale_m: float) -> MarkerArray:
    """DELETEALL first (so vanished targets disappear), then sphere + text per target with 3D."""
    markers = [Marker(header=header, ns=MARKER_NS, action=Marker.DELETEALL)]
    lifetime = Duration(sec=0)  # until replaced: the next message starts with DELETEALL
    for target in targets:
        if target.xyz is None:
            continue
        position = Point(x=float(target.xyz[0]), y=float(target.xyz[1]), z=float(target.xyz[2]))
        sphere = Marker(header=header, ns=MARKER_NS, id=2 * target.target_id, type=Marker.SPHERE,
                        action=Marker.ADD, color=_color(target.target_id, 0.8), lifetime=lifetime)
        sphere.pose.position = position
        sphere.pose.orientation.w = 1.0
        sphere.scale.x = sphere.scale.y = sphere.scale.z = float(scale_m)
        text = Marker(header=header, ns=MARKER_NS, id=2 * target.target_id + 1, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=_color(target.target_id), lifetime=lifetime,
                      text=f"{label} {target.score:.2f}")
        text.pose.position = Point(x=position.x, y=position.y - 1.5 * float(scale_m), z=position.z)
        text.pose.orientation.w = 1.0
        text.scale.z = float(scale_m)
        markers += [sphere, text]
    return MarkerArray(markers=markers)


def clear_markers_msg(header: Header) -> MarkerArray:
    return MarkerArray(markers=[Marker(header=header, ns=MARKER_NS, action=Marker.DELETEALL)])
