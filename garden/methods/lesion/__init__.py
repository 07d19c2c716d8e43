"""Residual networks behave like ensembles: the lesion study and path analysis (seed 004, ch. 4).

- `plain_vgg`: the 15-layer, 128-channel plain VGG baseline (registered `plain_vgg15`).
- `surgery`: run a trained ResNet or plain VGG with blocks deleted or reordered, and with the
  backward pass restricted to one path (the thesis' gradient-per-path-length sampling).
- `paths`: the closed forms (path-length distribution, Eq. 4.8, Kendall tau, effective paths).
- `study`: the experiments of Figs. 4.3 to 4.7 on a trained run; `plots`: their figures.
- `python -m garden.methods.lesion --workdir RUN` writes the JSON and PNGs.
"""

from garden.methods.lesion.plain_vgg import PlainConvLayer, PlainVGG, plain_vgg15

__all__ = ["PlainConvLayer", "PlainVGG", "plain_vgg15"]
