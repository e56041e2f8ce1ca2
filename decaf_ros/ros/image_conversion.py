"""sensor_msgs/Image (and CompressedImage) <-> numpy, with cv_bridge when the ROS 2 one is installed.

cv_bridge is not obtainable from every install (pip-only ROS 2 has none), so a small numpy path covers the
encodings a camera driver actually publishes. Both paths give the same contract:

* color: ``(H, W, 3)`` uint8 RGB (also from JPEG/PNG ``CompressedImage``, decoded by OpenCV),
* depth (16UC1/mono16 mm, 32FC1 m): ``(H, W)`` float32 metres (NaN where the sensor has no reading), via ``geometry.depth_to_meters``.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

COLOR_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
DEPTH_ENCODINGS: dict[str, str] = {"16UC1": "u2", "mono16": "u2", "32FC1": "f4"}  # numpy kind + item size
SUPPORTED_COLOR = ", ".join(COLOR_ENCODINGS)
SUPPORTED_DEPTH = ", ".join(DEPTH_ENCODINGS)


class ImageConversionError(ValueError):
    """An Image message that cannot be turned into an array (encoding, size or buffer problem)."""


def _load_cv_bridge() -> Any | None:
    """Return a CvBridge when the ROS 2 cv_bridge is importable, else None."""
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        return CvBridge()
    except Exception:  # noqa: BLE001 - absent, or a ROS 1 build that fails at import
        return None


_BRIDGE = _load_cv_bridge()


def cv_bridge_available() -> bool:
    return _BRIDGE is not None


# --------------------------------------------------------------------------- checks + raw view


def _check_geometry(msg: Image, bytes_per_pixel: int) -> None:
    """Reject messages whose size fields and buffer disagree before touching the data."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image ({width}x{height}, encoding {msg.encoding!r})")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} ({msg.encoding}, {width}x{height})"
        )
    if len(msg.data) < step * height:
        raise ImageConversionError(
            f"image data has {len(msg.data)} bytes, expected step*height = {step}*{height} = {step * height}"
        )


def _rows(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    """(H, W*bpp) uint8 view of the pixel bytes, row padding (``step``) removed."""
    _check_geometry(msg, bytes_per_pixel)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=step * height).reshape(height, step)
    return buf[:, : width * bytes_per_pixel]


# --------------------------------------------------------------------------- color


# OpenCV conversions write a fresh contiguous array in one pass (a numpy channel flip + copy was 20x slower).
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}


def _color_numpy(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB, always a new array (the message buffer may be reused)."""
    channels = COLOR_ENCODINGS[msg.encoding]
    pixels = _rows(msg, channels).reshape(int(msg.height), int(msg.width), channels)
    if msg.encoding == "rgb8":
        return np.array(pixels, copy=True)
    return cv2.cvtColor(pixels, _TO_RGB[msg.encoding])


def image_to_rgb(msg: Image) -> np.ndarray:
    """Color Image -> ``(H, W, 3)`` uint8 RGB (a copy; the message buffer may be reused)."""
    encoding = msg.encoding
    if encoding in COLOR_ENCODINGS:
        return _color_numpy(msg)
    if _BRIDGE is not None and encoding not in DEPTH_ENCODINGS:
        # cv_bridge knows more (yuv422, bayer_*, ...): let it try, but still validate sizes first.
        _check_geometry(msg, 1)
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            raise ImageConversionError(
                f"cannot convert color image with encoding {encoding!r}: {exc}"
            ) from exc
    raise ImageConversionError(
        f"unsupported color image encoding {encoding!r}; supported: {SUPPORTED_COLOR}"
    )


# --------------------------------------------------------------------------- compressed color

# What image_transport's compressed plugin writes in ``format``: "jpeg", "png", or
# "rgb8; jpeg compressed bgr8" (raw encoding; codec + packed encoding). compressedDepth is not color.
COMPRESSED_CODECS = ("jpeg", "jpg", "png")


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """JPEG or PNG ``CompressedImage`` -> ``(H, W, 3)`` uint8 RGB (OpenCV decodes by content)."""
    fmt = msg.format.strip().lower()
    if "compresseddepth" in fmt or (fmt and not any(codec in fmt for codec in COMPRESSED_CODECS)):
        raise ImageConversionError(f"unsupported compressed image format {msg.format!r}; supported: jpeg, png")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            f"cannot decode compressed image ({data.size} bytes, format {msg.format!r}): not valid JPEG/PNG data")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(rgb: np.ndarray, codec: str, header: Header, quality: int = 90) -> CompressedImage:
    """``(H, W, 3)`` uint8 RGB -> ``CompressedImage`` ("jpeg" at ``quality``, or "png"), as a camera sends it."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {codec}")
    return CompressedImage(header=header, format=codec, data=buf.tobytes())


# --------------------------------------------------------------------------- depth


def _depth_numpy(msg: Image) -> np.ndarray:
    kind = DEPTH_ENCODINGS[msg.encoding]
    itemsize = int(kind[1])
    rows = _rows(msg, itemsize)
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    values = np.ascontiguousarray(rows).view(dtype).reshape(int(msg.height), int(msg.width))
    return values.astype(values.dtype.newbyteorder("="))  # native order, and a copy


def image_to_depth_m(msg: Image) -> np.ndarray:
    """Depth Image (16UC1 millimetres or 32FC1 metres) -> ``(H, W)`` float32 metres."""
    from decaf_ros.core.geometry import depth_to_meters

    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(
            f"unsupported depth image encoding {msg.encoding!r}; supported: {SUPPORTED_DEPTH}"
        )
    raw = _depth_numpy(msg)
    return np.asarray(depth_to_meters(raw, msg.encoding), dtype=np.float32)


# --------------------------------------------------------------------------- numpy -> Image


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """``(H, W)`` uint8 -> mono8, ``(H, W, 3)`` uint8 RGB -> rgb8; bool masks become 0/255 mono8."""
    if encoding == "mono8":
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        expected_ndim, channels = 2, 1
    elif encoding == "rgb8":
        expected_ndim, channels = 3, 3
    else:
        raise ImageConversionError(f"array_to_image supports mono8 and rgb8, not {encoding!r}")
    if array.ndim != expected_ndim or (channels == 3 and array.shape[2] != 3) or array.dtype != np.uint8:
        raise ImageConversionError(
            f"{encoding} needs a uint8 array of {'(H, W)' if channels == 1 else '(H, W, 3)'}, "
            f"got {array.dtype} {array.shape}"
        )
    array = np.ascontiguousarray(array)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(msg.width * channels)
    msg.data = array.tobytes()
    return msg
