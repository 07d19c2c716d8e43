"""NDDR-CNN (Gao et al., CVPR 2019): layerwise feature fusion of multi-task CNNs by neural
discriminative dimensionality reduction, with its baselines (single-task, shared-bottom,
cross-stitch) and NDDR-CNN-Shortcut. See docs/methods/nddr.md."""

from garden.methods.nddr.layers import NDDR, CrossStitch, DiagonalFusionInitializer
from garden.methods.nddr.models import MultiTaskNet

__all__ = ["NDDR", "CrossStitch", "DiagonalFusionInitializer", "MultiTaskNet"]
