"""ConvNet-AIG / Adanets (seed 004, ch. 5): residual networks with adaptive inference graphs.

Modules: `gate` (the gate and the straight-through Gumbel sample), `model` (`AIGResNet` and the
registered `aig_resnet*` variants), `conditional` (skipping blocks at inference), `flops` (MAC
counts), `task` (`aig_classification`: target-rate loss, gate metrics, serving), `analysis`
(execution rates per block and class, the thesis' figure 5.4: `python -m garden.methods.aig`).
"""
