"""Predictions of a trained dense run beside the ground truth, as one PNG (what TensorBoard shows).

    python benchmarks/nddr_predictions_figure.py --workdir runs/nddr_toyworld_small

Rows: test images; columns: image, segmentation truth / prediction, normals truth / prediction
(the colours of DenseTask.prediction_images). Writes docs/images/nddr_predictions.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "nddr_predictions.png"))
    args = parser.parse_args()

    import tensorflow as tf

    from garden.config import load_config
    from garden.trainer import _sample_batch, load_task

    config = load_config(Path(args.workdir) / "config.yaml")
    task, _ = load_task(config, args.workdir)
    features, labels = _sample_batch(config, config.data.test_split, args.images)
    panels = task.prediction_images(features, labels, max_images=args.images)
    columns = [np.asarray(features["image"])[: args.images] / 255.0]
    for key in ("segmentation/ground_truth", "segmentation/prediction", "normals/ground_truth",
                "normals/prediction", "depth/ground_truth", "depth/prediction"):
        if key in panels:
            columns.append(panels[key])
    rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(len(columns[0]))]
    grid = np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)
    grid = np.kron(grid, np.ones((2, 2, 1)))  # 2x nearest upscale for readability
    Path(args.out).write_bytes(tf.io.encode_png((grid * 255).round().astype(np.uint8)).numpy())
    print(args.out)


if __name__ == "__main__":
    main()
