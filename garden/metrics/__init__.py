"""Shared metrics (Keras metrics, streaming over a whole evaluation set).

- `segmentation`: confusion-matrix mIoU and pixel accuracy with an ignore label.
- `normals`: surface-normal angle errors (mean, median, % within thresholds).
- `depth`: absolute relative error and RMSE on valid pixels.
- `age`: DEX expected-age mean / median absolute error.
- `histogram`: the streaming histogram behind every median above.
"""

from garden.metrics.age import ExpectedAgeError, expected_age
from garden.metrics.depth import DepthErrors
from garden.metrics.histogram import StreamingHistogram
from garden.metrics.normals import NormalAngleErrors, angle_degrees, valid_normals
from garden.metrics.segmentation import SegmentationMetrics

__all__ = ["DepthErrors", "ExpectedAgeError", "NormalAngleErrors", "SegmentationMetrics",
           "StreamingHistogram", "angle_degrees", "expected_age", "valid_normals"]
