"""Camera images as drivers publish them -> the RGB image the VLA reads: every encoding, row padding, JPEG and
PNG as image_transport names them, resizing, and a clear reason for every image that cannot be converted."""

import cv2
import numpy as np
import pytest

from rlt_core.control.profile import Camera
from rlt_core.data.images import camera_image_to_rgb, compressed_format, compressed_to_rgb, raw_to_rgb, resized


@pytest.fixture
def rgb() -> np.ndarray:
    """A 6x8 RGB image with distinct channels: a swapped red and blue would show."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image[..., 0] //= 2  # red below 128, blue anything: never symmetric
    return image


def padded(image: np.ndarray, pad: int) -> tuple[bytes, int]:
    """The bytes of `image` with `pad` extra bytes at the end of every row, and the row step."""
    rows = image.reshape(image.shape[0], -1)
    out = np.full((rows.shape[0], rows.shape[1] + pad), 255, np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.tobytes(), out.shape[1]


@pytest.mark.parametrize('pad', [0, 5])
def test_raw_encodings_become_rgb_whatever_the_row_padding(rgb, pad):
    data, step = padded(rgb, pad)
    np.testing.assert_array_equal(raw_to_rgb(data, 6, 8, 'rgb8', step), rgb)
    data, step = padded(rgb[..., ::-1], pad)
    np.testing.assert_array_equal(raw_to_rgb(data, 6, 8, 'bgr8', step), rgb)
    gray = rgb[..., 1]
    data, step = padded(gray, pad)
    mono = raw_to_rgb(data, 6, 8, 'mono8', step)
    assert mono.shape == (6, 8, 3) and mono.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(mono[..., channel], gray)


def test_raw_data_may_be_any_buffer(rgb):
    import array
    np.testing.assert_array_equal(raw_to_rgb(array.array('B', rgb.tobytes()), 6, 8, 'rgb8', 24), rgb)


@pytest.mark.parametrize('format', ['png', 'bgr8; png compressed bgr8', 'rgb8; png compressed bgr8',
                                    'mono8; png compressed mono8'])
def test_png_is_exact(rgb, format):
    if 'mono8' in format:
        gray = rgb[..., 1]
        ok, png = cv2.imencode('.png', gray)
        assert ok
        np.testing.assert_array_equal(compressed_to_rgb(png.tobytes(), format), np.stack([gray] * 3, axis=-1))
        return
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb(png.tobytes(), format), rgb)


def test_a_file_compressed_from_rgb_channels_is_read_as_such(rgb):
    """image_transport writes `compressed rgb8` where it compressed the RGB channels in OpenCV's BGR slots."""
    ok, png = cv2.imencode('.png', rgb)
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb(png, 'rgb8; png compressed rgb8'), rgb)


@pytest.mark.parametrize('format', ['jpeg', 'bgr8; jpeg compressed bgr8', 'rgb8; jpeg compressed bgr8', 'JPG'])
def test_jpeg_is_close(format):
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 3, y * 4, 255 - x * 2], axis=-1).astype(np.uint8)  # JPEG keeps a smooth image well
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    decoded = compressed_to_rgb(jpeg.tobytes(), format)
    assert decoded.shape == (48, 64, 3)
    error = np.abs(decoded.astype(int) - smooth.astype(int))
    assert error.mean() < 2 and error.max() < 16


def test_format_names_as_image_transport_writes_them():
    assert compressed_format('jpeg') == compressed_format('bgr8; jpeg compressed bgr8') == 'jpeg'
    assert compressed_format('png') == compressed_format('rgb8; png compressed rgb8') == 'png'
    for bad in ('', 'tiff', 'bgr8', 'jpeg png'):
        with pytest.raises(ValueError, match='is neither of'):
            compressed_format(bad)


def test_resizing_shrinks_by_area_and_keeps_an_image_of_the_right_size(rgb):
    assert resized(rgb, 6, 8) is rgb
    blocks = np.kron(np.arange(4, dtype=np.uint8).reshape(2, 2) * 60, np.ones((4, 4), np.uint8))
    image = np.repeat(blocks[..., None], 3, axis=2)  # 8x8: four flat 4x4 blocks
    small = resized(image, 2, 2)
    np.testing.assert_array_equal(small[..., 0], [[0, 60], [120, 180]])  # each block's mean
    np.testing.assert_array_equal(resized(image, 4, 4), cv2.resize(image, (4, 4), interpolation=cv2.INTER_AREA))
    assert resized(rgb, 12, 16).shape == (12, 16, 3) and resized(rgb, 3, 10).shape == (3, 10, 3)


@pytest.mark.parametrize('args, message', [
    ((b'\0' * 48, 4, 4, 'yuv422', 8), "encoding 'yuv422' is not one of"),
    ((b'\0' * 48, 4, 4, 'rgb16', 24), "encoding 'rgb16' is not one of"),
    ((b'\0' * 40, 4, 4, 'rgb8', 12), 'truncated: 40 bytes for 4 rows of 12'),
    ((b'\0' * 48, 4, 4, 'rgb8', 10), 'step 10 is shorter than a row of 4 rgb8 pixels'),
    ((b'', 0, 0, 'mono8', 0), r'empty image \(0x0\)'),
])
def test_raw_images_that_cannot_be_converted_say_why(args, message):
    with pytest.raises(ValueError, match=message):
        raw_to_rgb(*args)


def test_compressed_images_that_cannot_be_converted_say_why(rgb):
    with pytest.raises(ValueError, match='does not decode'):
        compressed_to_rgb(b'not an image at all', 'jpeg')
    ok, png = cv2.imencode('.png', rgb)
    with pytest.raises(ValueError, match='does not decode'):
        compressed_to_rgb(png.tobytes()[:40], 'png')  # truncated
    with pytest.raises(ValueError, match='empty'):
        compressed_to_rgb(b'', 'png')
    with pytest.raises(ValueError, match='is neither of'):
        compressed_to_rgb(png.tobytes(), 'tiff')


def test_a_camera_gets_its_encoding_at_its_size(rgb):
    any_raw = Camera('wrist', width=4, height=3)
    bgr_only = Camera('wrist', encoding='bgr8', width=4, height=3)
    bgr, step = padded(rgb[..., ::-1], 2)
    expected = cv2.resize(rgb, (4, 3), interpolation=cv2.INTER_AREA)
    for camera in (any_raw, bgr_only):
        np.testing.assert_array_equal(camera_image_to_rgb(camera, bgr, 'bgr8', 6, 8, step), expected)
    with pytest.raises(ValueError, match=r"encoding 'rgb8' is not bgr8 \(robot profile, camera wrist\)"):
        camera_image_to_rgb(bgr_only, rgb.tobytes(), 'rgb8', 6, 8, 24)
    jpeg_camera = Camera('wrist', encoding='jpeg', width=4, height=3, topic='/wrist/image_raw/compressed')
    assert jpeg_camera.compressed
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    with pytest.raises(ValueError, match="encoding 'png' is not jpeg"):
        camera_image_to_rgb(jpeg_camera, png.tobytes(), 'bgr8; png compressed bgr8')
    png_camera = Camera('wrist', width=4, height=3, topic='/wrist/image_raw/compressed')
    np.testing.assert_array_equal(camera_image_to_rgb(png_camera, png.tobytes(), 'png'), expected)
