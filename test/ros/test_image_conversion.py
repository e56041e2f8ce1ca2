"""Image <-> numpy on every supported encoding, padded rows, big-endian depth and broken messages."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from decaf_ros.ros import image_conversion as ic
from decaf_ros.ros.image_conversion import ImageConversionError, array_to_image, image_to_depth_m, image_to_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)  # odd size on purpose


def make_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Pack pixels row by row with ``pad`` extra bytes per row (a driver's aligned step)."""
    height, width = pixels.shape[:2]
    if bigendian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))
    row = pixels.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([row, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=padded.tobytes())


@pytest.fixture(params=[False, True], ids=["numpy", "cv_bridge_if_installed"])
def bridge_mode(request, monkeypatch):
    """Run every color test on the numpy path, and again with cv_bridge when it is installed."""
    if request.param and not ic.cv_bridge_available():
        pytest.skip("cv_bridge (ROS 2) not installed")
    if not request.param:
        monkeypatch.setattr(ic, "_BRIDGE", None)
    return request.param


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding,make", [
    ("rgb8", lambda rgb: rgb),
    ("bgr8", lambda rgb: rgb[..., ::-1]),
    ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])),
    ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])),
])
def test_color_encodings_to_rgb(bridge_mode, encoding, make, pad):
    out = image_to_rgb(make_msg(np.ascontiguousarray(make(RGB)), encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8_replicated_to_rgb(bridge_mode, pad):
    gray = RGB[..., 0].copy()
    out = image_to_rgb(make_msg(gray, "mono8", pad=pad))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_color_output_does_not_alias_message_buffer():
    msg = make_msg(RGB, "rgb8")
    out = image_to_rgb(msg)
    out[:] = 0
    assert image_to_rgb(msg).any()


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_16uc1_millimetres_to_metres(bigendian, pad):
    mm = np.array([[0, 1000, 1500], [65535, 250, 2]], dtype=np.uint16)
    out = image_to_depth_m(make_msg(mm, "16UC1", pad=pad, bigendian=bigendian))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out[0, 1:], [1.0, 1.5])
    np.testing.assert_allclose(out[1, 1], 0.25)
    assert not np.isfinite(out[0, 0]) or out[0, 0] == 0  # 0 mm = no reading


@pytest.mark.parametrize("bigendian", [False, True])
def test_32fc1_metres_passthrough(bigendian):
    m = np.array([[0.5, np.nan, 2.25]], dtype=np.float32)
    out = image_to_depth_m(make_msg(m, "32FC1", pad=4, bigendian=bigendian))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, [0, 2]], [0.5, 2.25])
    assert np.isnan(out[0, 1])


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "8UC3", ""])
def test_unsupported_color_encoding_names_it_and_the_list(bridge_mode, encoding):
    msg = make_msg(RGB, encoding)
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(msg)
    if not bridge_mode:
        assert repr(encoding) in str(info.value) and "rgb8, bgr8, rgba8, bgra8, mono8" in str(info.value)


def test_color_encoding_on_depth_path_rejected():
    with pytest.raises(ImageConversionError, match="'rgb8'.*16UC1, mono16, 32FC1"):
        image_to_depth_m(make_msg(RGB, "rgb8"))


def test_zero_size_rejected():
    with pytest.raises(ImageConversionError, match="zero-size"):
        image_to_rgb(Image(height=0, width=640, encoding="rgb8", step=1920))
    with pytest.raises(ImageConversionError, match="zero-size"):
        image_to_depth_m(Image(height=4, width=0, encoding="16UC1", step=0))


def test_short_data_and_small_step_rejected():
    msg = make_msg(RGB, "rgb8", pad=2)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageConversionError, match="expected step\\*height"):
        image_to_rgb(msg)
    msg = make_msg(RGB, "rgb8")
    msg.step = 7 * 3 - 1
    with pytest.raises(ImageConversionError, match="step"):
        image_to_rgb(msg)


def test_array_to_image_roundtrip_and_header():
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = array_to_image(RGB, "rgb8", header)
    assert (msg.width, msg.height, msg.step, msg.encoding) == (7, 5, 21, "rgb8")
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 34
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:5] = True
    mono = array_to_image(mask, "mono8", header)
    raw = np.frombuffer(bytes(mono.data), np.uint8).reshape(5, 7)
    assert set(np.unique(raw)) == {0, 255} and (raw == 255).sum() == 6


def test_array_to_image_rejects_wrong_shapes():
    with pytest.raises(ImageConversionError):
        array_to_image(RGB, "mono8", Header())
    with pytest.raises(ImageConversionError):
        array_to_image(RGB[..., 0], "rgb8", Header())
    with pytest.raises(ImageConversionError):
        array_to_image(RGB, "bgr8", Header())
