"""Camera images as drivers publish them, turned into the RGB images the VLA reads (OpenCV).

Drivers publish raw images (sensor_msgs/Image: `rgb8`, `bgr8` or `mono8`, rows `step` bytes apart, any
resolution) or compressed ones (sensor_msgs/CompressedImage from image_transport's compressed publisher: JPEG
or PNG bytes, `format` such as ``jpeg``, ``png``, ``bgr8; jpeg compressed bgr8`` or ``rgb8; png compressed
rgb8``). Every one of them becomes an (height, width, 3) uint8 RGB array; `camera_image_to_rgb` also checks the
encoding against the robot profile's camera and resizes to the camera's size (`cv2.INTER_AREA` when shrinking,
`cv2.INTER_LINEAR` when enlarging). An image that cannot be converted raises ValueError with the reason.

No ROS here: the nodes pass the messages' fields.
"""

import cv2
import numpy as np

from rlt_core.control.profile import COMPRESSED_FORMATS, Camera

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
"""Bytes per pixel of each raw encoding."""


def raw_to_rgb(data, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """An (height, width, 3) uint8 RGB array of a raw image's bytes (`data`: any buffer) in `encoding`, whose rows
    are `step` bytes apart (`step` >= width x bytes per pixel: drivers may pad rows)."""
    if encoding not in CHANNELS:
        raise ValueError(f'encoding {encoding!r} is not one of {sorted(CHANNELS)}')
    channels = CHANNELS[encoding]
    if height <= 0 or width <= 0:
        raise ValueError(f'empty image ({height}x{width})')
    if step < width * channels:
        raise ValueError(f'step {step} is shorter than a row of {width} {encoding} pixels ({width * channels} bytes)')
    pixels = np.frombuffer(data, np.uint8)
    if pixels.size < height * step:
        raise ValueError(f'image data is truncated: {pixels.size} bytes for {height} rows of {step}')
    image = pixels[:height * step].reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if encoding == 'bgr8' else cv2.COLOR_GRAY2RGB)


def compressed_format(format: str) -> str:
    """The compression (`COMPRESSED_FORMATS`) that a CompressedImage's `format` names: ``jpeg``, ``png``, or
    image_transport's ``<encoding>; <compression> compressed <encoding>``."""
    words = format.replace(';', ' ').lower().split()
    found = [name for name in COMPRESSED_FORMATS if name in words or (name == 'jpeg' and 'jpg' in words)]
    if len(found) != 1:
        raise ValueError(f'compressed format {format!r} is neither of {list(COMPRESSED_FORMATS)}')
    return found[0]


def compressed_to_rgb(data, format: str) -> np.ndarray:
    """An (height, width, 3) uint8 RGB array of a JPEG or PNG image's bytes (`format`: the CompressedImage's).
    The file's channels are blue, green, red (OpenCV's order, as image_transport writes ``compressed bgr8``), or
    red, green, blue where the format says ``compressed rgb8``."""
    compressed_format(format)
    encoded = np.frombuffer(data, np.uint8)
    if encoded.size == 0:
        raise ValueError('compressed image data is empty')
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)  # 3 channels, 8 bits, whatever the file holds
    if image is None:
        raise ValueError(f'compressed image data ({encoded.size} bytes, format {format!r}) does not decode')
    if 'compressed rgb' in format.lower():
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` at (height, width): itself when it already is, else resampled (area averaging when shrinking)."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def camera_image_to_rgb(camera: Camera, data, encoding: str, height: int = 0, width: int = 0,
                        step: int = 0) -> np.ndarray:
    """The image the VLA sees of one message from `camera` (a robot profile's camera): (camera.height,
    camera.width, 3) uint8 RGB. A raw camera's message gives `data`, `encoding`, `height`, `width` and `step`; a
    compressed camera's gives `data` and its format as `encoding`. ValueError when the encoding is not the one
    the profile states for the camera, or the image does not convert."""
    compressed = camera.compressed
    name = compressed_format(encoding) if compressed else encoding
    if not camera.accepts(name):
        raise ValueError(f'encoding {name!r} is not {camera.encoding} (robot profile, camera {camera.name})')
    rgb = compressed_to_rgb(data, encoding) if compressed else raw_to_rgb(data, height, width, encoding, step)
    return resized(rgb, camera.height, camera.width)
