"""Visual variation learning (seed 000; Leksut, Zhao, Itti, "Learning Visual Variation for Object
Recognition"): auxiliary variation tasks (pose, lighting classification; Siamese / triplet pose
embeddings) that train alongside the category classifier and are stripped before export.

Modules: `heads` (injection transformation units), `model` (the network with its auxiliary
heads), `labels` (variation class ids from label keys), `pairs` (neighbouring / distant pose
sampling), `dataset` (the registered `vvl_triplets` source), `task` (the two tasks).
See docs/methods/vvl.md.
"""
