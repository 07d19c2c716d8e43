"""toyworld: the procedural dataset (renderer, toy catalogue, variants, TFDS builders).

Importing this package registers the TFDS builders `toyworld_objects`, `toyworld_attributes`,
`toyworld_scenes` and `toyworld_video` (it imports tensorflow_datasets, not TensorFlow; the
renderer and the variants are imported on first use).
"""

from garden.data.toyworld.builder import (  # noqa: F401 - public API, registers the builders
    BUILDER_VERSION,
    ToyworldConfig,
    cache_dir,
    generate,
    info,
    load_split,
    make_builder,
)

__all__ = ["BUILDER_VERSION", "ToyworldConfig", "cache_dir", "generate", "info", "load_split",
           "make_builder"]
