"""The named toyworld dataset variants: `VARIANTS[name]` is a `Variant` (see common.py).

- objects: one toy per image with iLab-like labels, instance-disjoint splits (seed 000).
- attributes: one primitive with independent shape/colour/size/texture (seed 004, CSN).
- scenes: several toys on a ground plane with dense labels and boxes (seed 002, DetectoRS).
- video: clips of moving toys with stable instance ids (seed 002, ViP-DeepLab).
Every variant has `style: clean | photo` and `test_style` (seed 003's domain shift).
"""

from garden.data.toyworld.variants import attributes, objects, scenes, video
from garden.data.toyworld.variants.common import GENERATOR_VERSION, SPLITS, BaseOptions, Variant

VARIANTS: dict[str, Variant] = {
    v.name: v for v in (objects.VARIANT, attributes.VARIANT, scenes.VARIANT, video.VARIANT)}

__all__ = ["GENERATOR_VERSION", "SPLITS", "VARIANTS", "BaseOptions", "Variant"]
