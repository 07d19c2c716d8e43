"""GUNN and SUNN: Gradually Updated Neural Networks (Qiao et al., ICML 2018; Qiao's thesis, ch. 4).

    layers.py      the gradual update layer (GUNN / SUNN / NoRes) with Algorithm 2's backprop
    models.py      the networks (GUNN-15/24, GUNN-18, Wide GUNN-18, SUNN-15/24/18, `gunn`)
    singularity.py the overlap-singularity toy of Sec. 4.4
    reproduce.py   the small-scale reproduction behind docs/results/gunn.md
"""

from garden.methods.gunn.layers import GradualUpdate, UpdateBatchNorm, UpdateUnit
from garden.methods.gunn.models import GUNNNet

__all__ = ["GradualUpdate", "UpdateBatchNorm", "UpdateUnit", "GUNNNet"]
