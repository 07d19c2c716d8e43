"""Pictures of a trained CSN: a 2-D projection of each condition's subspace, and the embeddings in
TensorBoard's projector.

    python -m garden.methods.csn.visualize --config configs/csn/csn_learned_attributes.yaml \\
        --workdir runs/csn_learned_attributes --out docs/images/csn_subspaces.png

- PNG: one panel per notion: the test images' masked embeddings f(x) ⊙ m_c projected on their
  first two principal components (PCA by numpy's SVD; the thesis shows t-SNE, Figs. 3.4-3.5, and
  scikit-learn is not a dependency), coloured by the image's label under that notion.
- Projector: `<workdir>/tensorboard/projector/` holds the full embedding and each notion's masked
  embedding as tensors, a metadata.tsv with every notion's label, and a sprite of the images;
  open it with `tensorboard --logdir <workdir>/tensorboard`.
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def pca_2d(x: np.ndarray) -> np.ndarray:
    """`[N, D]` -> the coordinates on the first two principal axes, `[N, 2]`."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:  # a one-dimensional subspace
        coords = np.concatenate([coords, np.zeros((len(coords), 2 - coords.shape[1]))], axis=1)
    return coords


def embed_all(task, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """(full embeddings [N, d], [masked embeddings [N, d] per condition]) of uint8 images."""
    full, masked = [], [[] for _ in task.notions]
    for start in range(0, len(images), batch_size):  # batches of a numpy array
        x = images[start:start + batch_size]
        for c in range(len(task.notions)):
            out = task.serve({"images": x, "condition": np.full(len(x), c, np.int32)})
            masked[c].append(np.asarray(out["masked_embedding"]))
            if c == 0:
                full.append(np.asarray(out["embedding"]))
    return np.concatenate(full), [np.concatenate(m) for m in masked]


def plot_subspaces(masked: list[np.ndarray], labels: dict[str, np.ndarray], notions: list[str],
                   label_names: dict, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(notions), figsize=(4.2 * len(notions), 4.2), squeeze=False)
    for ax, notion, embedding in zip(axes[0], notions, masked):
        coords = pca_2d(embedding)
        names = list(label_names.get(notion, []))
        for value in np.unique(labels[notion]):
            chosen = labels[notion] == value
            name = names[value] if 0 <= value < len(names) else str(value)
            ax.scatter(coords[chosen, 0], coords[chosen, 1], s=6, alpha=0.7, label=name)
        ax.set_title(f"condition: {notion}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_projector(log_dir: str, full: np.ndarray, masked: list[np.ndarray], notions: list[str],
                    labels: dict[str, np.ndarray], images: np.ndarray) -> None:
    import tensorflow as tf
    from tensorboard.plugins import projector

    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w") as f:
        f.write("\t".join(notions) + "\n")
        for row in zip(*(labels[n] for n in notions)):
            f.write("\t".join(str(int(v)) for v in row) + "\n")
    side = int(np.ceil(np.sqrt(len(images))))
    h, w = images.shape[1:3]
    sprite = np.zeros((side * h, side * w, 3), np.uint8)
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    for i, image in enumerate(rgb):  # at most a few thousand thumbnails, written once
        sprite[(i // side) * h:(i // side + 1) * h, (i % side) * w:(i % side + 1) * w] = image
    tf.io.write_file(os.path.join(log_dir, "sprite.png"), tf.io.encode_png(sprite))
    tensors = {"embedding": full, **{f"masked_{n}": m for n, m in zip(notions, masked)}}
    variables = {name: tf.Variable(value, name=name) for name, value in tensors.items()}
    tf.train.Checkpoint(**variables).save(os.path.join(log_dir, "embeddings.ckpt"))
    config = projector.ProjectorConfig()
    for name in tensors:
        entry = config.embeddings.add()
        entry.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        entry.metadata_path = "metadata.tsv"
        entry.sprite.image_path = "sprite.png"
        entry.sprite.single_image_dim.extend([w, h])
    projector.visualize_embeddings(log_dir, config)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="2-D subspace pictures and the TensorBoard projector of a CSN run")
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", default=None, help="PNG path (default <workdir>/csn_subspaces.png)")
    parser.add_argument("--split", default=None, help="image split of the source (default: data.test_split)")
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from garden.config import load_config
    from garden.methods.csn.data import notion_labels
    from garden.trainer import load_task

    config = load_config(args.config, args.set)
    task, _ = load_task(config, args.workdir)
    split = args.split or config.data.test_split
    images, labels = notion_labels(config.data, split)
    images = images[:args.max_images]
    labels = {k: v[:args.max_images] for k, v in labels.items()}
    full, masked = embed_all(task, images)
    out = args.out or os.path.join(args.workdir, "csn_subspaces.png")
    plot_subspaces(masked, labels, task.notions, task.data_info.get("label_names", {}), out,
                   title=f"{config.experiment}: PCA of each condition's masked embedding ({split})")
    write_projector(os.path.join(args.workdir, "tensorboard", "projector"), full, masked, task.notions, labels, images)
    print(f"wrote {out} and {os.path.join(args.workdir, 'tensorboard', 'projector')}")


if __name__ == "__main__":
    main()
