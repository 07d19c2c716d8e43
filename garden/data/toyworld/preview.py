"""Preview grids of toyworld samples, drawn straight from a variant (no cache needed).

`preview(variant, options, out, n=..., split=...)` renders `n` examples and writes a PNG:

- classification variants (objects, attributes): a grid of images titled with their labels
  (class names where the variant has them, viewpoint angles in degrees);
- dense variants (scenes): one column per sample, one row per field: the image with its boxes
  and class names, the semantic segmentation, the instance map, the depth (colour map, black
  where nothing is hit) and the normals as RGB ((n + 1) / 2), with a legend of the classes;
- video: per clip, a row of frames with boxes labelled "class #instance" and a row of instance
  maps (one colour per instance id, stable over the clip).

Matplotlib draws through its Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Mapping

import numpy as np

from garden.data.errors import DataError
from garden.data.toyworld import builder

DENSE_KEYS = ("segmentation", "instance_map", "depth", "normals")
# Scalars shown in titles, in this order; the rest follow alphabetically.
TITLE_ORDER = ("label", "category", "shape", "color", "size", "texture", "instance", "azimuth_deg",
               "elevation_deg", "azimuth", "elevation", "lighting", "focus", "background",
               "size_value")
SHORT = {"category": "", "instance": "", "azimuth_deg": "az", "elevation_deg": "el",
         "azimuth": "az bin", "elevation": "el bin", "lighting": "light", "focus": "focus",
         "background": "", "size_value": "size", "shape": "", "color": "", "size": "",
         "texture": ""}
STUFF_COLOURS = {0: (0.78, 0.88, 0.97), 1: (0.93, 0.89, 0.80), 2: (0.62, 0.58, 0.52)}


# Distinct colours for the toy classes (tab10 with grey swapped for gold: grey is the ground).
THING_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#ffd92f")


def class_colours(num: int) -> np.ndarray:
    """[num, 3] colours: sky/wall/ground muted, things saturated and distinct."""
    from matplotlib.colors import to_rgb

    colours = np.zeros((max(num, 3), 3), np.float32)
    for i in range(colours.shape[0]):
        if i in STUFF_COLOURS:
            colours[i] = STUFF_COLOURS[i]
        elif i - 3 < len(THING_PALETTE):
            colours[i] = to_rgb(THING_PALETTE[i - 3])
        else:
            colours[i] = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.7, 0.9)
    return colours


def instance_colours(max_id: int) -> np.ndarray:
    """[max_id + 1, 3]: black for 0 (stuff), a fixed colour per instance id."""
    colours = np.zeros((max_id + 1, 3), np.float32)
    for i in range(1, max_id + 1):
        hue = (0.13 + i * 0.381966) % 1.0
        colours[i] = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return colours


def colour_segmentation(seg: np.ndarray, num_classes: int) -> np.ndarray:
    colours = class_colours(max(num_classes, int(seg.max()) + 1))
    return colours[np.clip(seg, 0, len(colours) - 1)]


def colour_instances(inst: np.ndarray) -> np.ndarray:
    return instance_colours(max(int(inst.max()), 1))[np.clip(inst, 0, None)]


def colour_depth(depth: np.ndarray) -> np.ndarray:
    """Near bright, far dark (magma); black where nothing is hit (depth 0)."""
    from matplotlib import colormaps

    valid = depth > 0
    out = np.zeros(depth.shape + (3,), np.float32)
    if valid.any():
        # Log depth between robust bounds, so a far horizon does not flatten the near scene.
        log = np.log(np.where(valid, depth, 1.0))
        lo, hi = np.percentile(log[valid], [1.0, 99.0])
        t = (log - lo) / max(hi - lo, 1e-6)
        rgb = colormaps["magma"](0.15 + 0.85 * (1.0 - np.clip(t, 0, 1)))[..., :3]
        out[valid] = rgb[valid]
    return out


def colour_normals(normals: np.ndarray) -> np.ndarray:
    """(n + 1) / 2 as RGB; black where the normal is 0 (nothing hit)."""
    rgb = np.clip((normals + 1.0) / 2.0, 0.0, 1.0)
    rgb[np.linalg.norm(normals, axis=-1) < 1e-6] = 0.0
    return rgb


def _box_names(label_names: Mapping[str, list[str]]) -> list[str] | None:
    for key in ("box_labels", "segmentation", "classes"):
        if key in label_names:
            return list(label_names[key])
    return None


def _name(names: list[str] | None, value: int) -> str:
    if names is not None and 0 <= value < len(names):
        return str(names[value])
    return str(value)


def _scalar_text(key: str, value, label_names: Mapping[str, list[str]]) -> str:
    value = np.asarray(value)
    short = SHORT.get(key, key)
    if np.issubdtype(value.dtype, np.floating):
        text = f"{float(value):.0f}°" if key.endswith("_deg") else f"{float(value):.2f}"
    else:
        v = int(value)
        text = _name(label_names.get(key), v) if key in label_names else str(v)
    return f"{short} {text}".strip() if short else text


def title_lines(example: Mapping[str, np.ndarray], label_names: Mapping[str, list[str]],
                width: int = 34) -> list[str]:
    """The scalar labels of an example as short lines: the primary class first."""
    scalars = {k: v for k, v in example.items() if np.ndim(v) == 0}
    keys = [k for k in TITLE_ORDER if k in scalars]
    keys += sorted(k for k in scalars if k not in keys)
    names_shown = set()
    parts = []
    for key in keys:
        if key in ("azimuth", "elevation") and f"{key}_deg" in scalars:
            continue  # the angle says more than its bin
        text = _scalar_text(key, scalars[key], label_names)
        if key == "label" and "category" in scalars:
            continue  # the label is the category: shown once
        if key == "label" and "shape" in scalars:
            continue
        if text in names_shown:
            continue
        names_shown.add(text)
        parts.append(text)
    if not parts:
        return []
    lines, current = [parts[0]], ""
    for part in parts[1:]:
        candidate = f"{current} · {part}" if current else part
        if len(candidate) > width and current:
            lines.append(current)
            current = part
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _frame_boxes(example, t: int | None):
    """(boxes [N, 4], labels [N], instances [N] or None) of an image or of frame t."""
    boxes = np.asarray(example.get("boxes", np.zeros((0, 4), np.float32)))
    labels = np.asarray(example.get("box_labels", np.zeros((len(boxes),), np.int64)))
    insts = example.get("box_instances")
    insts = None if insts is None else np.asarray(insts)
    if t is not None and boxes.ndim == 3:
        boxes, labels = boxes[t], labels[t] if labels.ndim == 2 else labels
        if insts is not None and insts.ndim == 2:
            insts = insts[t]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) if len(boxes) else np.zeros(0, bool)
    if labels.shape[:1] == boxes.shape[:1]:
        keep &= labels >= 0
        labels = labels[keep]
    if insts is not None and insts.shape[:1] == boxes.shape[:1]:
        insts = insts[keep]
    return boxes[keep], labels, insts


def draw_boxes(ax, boxes, labels, insts, names, height, width, fontsize=6.0):
    from matplotlib.patches import Rectangle

    colours = class_colours(max([int(l) + 1 for l in labels] + [3]))
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        colour = colours[int(labels[i])] if i < len(labels) else (1.0, 1.0, 0.0)
        x0, y0 = xmin * width - 0.5, ymin * height - 0.5
        ax.add_patch(Rectangle((x0, y0), (xmax - xmin) * width, (ymax - ymin) * height,
                               fill=False, edgecolor=colour, linewidth=1.0))
        text = _name(names, int(labels[i])) if i < len(labels) else ""
        if insts is not None and i < len(insts):
            text = f"{text} #{int(insts[i])}"
        if text:
            ax.text(x0 + 0.5, y0 - 0.5, text, fontsize=fontsize, color="black", va="bottom",
                    ha="left", clip_on=True,
                    bbox=dict(facecolor=colour, edgecolor="none", alpha=0.85, pad=0.6))


def _clean_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _figure(width_in, height_in):
    """A constrained-layout figure on an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, facecolor="white", layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    FigureCanvasAgg(fig)
    return fig


def options_text(variant: str, options) -> str:
    """The options that differ from the variant's defaults, as `k=v, ...`."""
    defaults = builder.canonical_options(variant, {})
    given = options.model_dump(mode="json")
    changed = {k: v for k, v in given.items() if v != defaults.get(k)}
    text = ", ".join(f"{k}={v}" for k, v in changed.items())
    return text.replace("[", "(").replace("]", ")") or "default options"


def _suptitle(fig, variant, opts_text, split):
    fig.suptitle(f"toyworld:{variant}  ·  {split}  ·  {opts_text}", fontsize=10)


def _legend(fig, classes: dict[int, str]):
    from matplotlib.patches import Patch

    if not classes:
        return
    colours = class_colours(max(classes) + 1)
    handles = [Patch(facecolor=colours[c], edgecolor="0.3", linewidth=0.4, label=name)
               for c, name in sorted(classes.items())]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 13), fontsize=7,
               frameon=False, handlelength=1.2, columnspacing=0.9)


def _label_axes(ax, lines: list[str], fontsize=7.0):
    """Primary class as a bold title, the other labels under the image."""
    if not lines:
        return
    ax.set_title(lines[0], fontsize=fontsize + 1, fontweight="bold", pad=2)
    if len(lines) > 1:
        ax.set_xlabel("\n".join(lines[1:]), fontsize=fontsize - 0.5, labelpad=2, linespacing=1.2)


def _grid_classification(fig_args, examples, label_names, cols):
    n = len(examples)
    rows = math.ceil(n / cols)
    titles = [title_lines(e, label_names) for e in examples]
    lines = max((len(t) for t in titles), default=0)
    cell = 1.8
    fig = _figure(cols * cell, rows * (cell + 0.13 * lines + 0.1) + 0.35)
    for i, example in enumerate(examples):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(example["image"], interpolation="nearest")
        _clean_axes(ax)
        _label_axes(ax, titles[i])
    _suptitle(fig, *fig_args)
    return fig


def _grid_dense(fig_args, examples, label_names):
    n = len(examples)
    rows_spec = [("image + boxes" if "boxes" in examples[0] else "image", None)]
    for key, title in (("segmentation", "segmentation"), ("instance_map", "instances"),
                       ("depth", "depth (near: bright)"), ("normals", "normals (n+1)/2")):
        if key in examples[0]:
            rows_spec.append((title, key))
    if "mask" in examples[0] and "segmentation" not in examples[0]:
        rows_spec.append(("mask", "mask"))
    cell = 1.5
    names = _box_names(label_names)
    titles = [title_lines(e, label_names, width=22) for e in examples]
    lines = max((len(t) for t in titles), default=0)
    h0, w0 = examples[0]["image"].shape[:2]
    fig = _figure(n * cell * min(w0 / h0, 2.0) + 0.3,
                  len(rows_spec) * cell + 0.6 + 0.13 * lines)
    seen: dict[int, str] = {}
    num_classes = len(names) if names else 0
    for j, example in enumerate(examples):
        h, w = example["image"].shape[:2]
        for i, (title, key) in enumerate(rows_spec):
            ax = fig.add_subplot(len(rows_spec), n, i * n + j + 1)
            _clean_axes(ax)
            if key is None:
                ax.imshow(example["image"], interpolation="nearest")
                boxes, labels, insts = _frame_boxes(example, None)
                draw_boxes(ax, boxes, labels, None, names, h, w)
                if titles[j]:
                    ax.set_title("\n".join(titles[j]), fontsize=6.5, pad=2, linespacing=1.15)
            elif key == "segmentation":
                seg = np.asarray(example[key])
                ax.imshow(colour_segmentation(seg, num_classes), interpolation="nearest")
                for c in np.unique(seg):
                    seen[int(c)] = _name(names, int(c))
            elif key == "instance_map":
                ax.imshow(colour_instances(np.asarray(example[key])), interpolation="nearest")
            elif key == "depth":
                ax.imshow(colour_depth(np.asarray(example[key])), interpolation="nearest")
            elif key == "normals":
                ax.imshow(colour_normals(np.asarray(example[key], np.float32)), interpolation="nearest")
            else:
                ax.imshow(np.asarray(example[key]), cmap="gray", interpolation="nearest")
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            if j == 0:
                ax.set_ylabel(title, fontsize=8)
    _suptitle(fig, *fig_args)
    _legend(fig, seen)
    return fig


def _grid_video(fig_args, examples, label_names, max_frames=8):
    frames = examples[0]["image"].shape[0]
    step = max(1, math.ceil(frames / max_frames))
    ts = list(range(0, frames, step))
    extra = [key for key in ("instance_map",) if key in examples[0]]
    rows_per = 1 + len(extra)
    rows = rows_per * len(examples)
    h0, w0 = examples[0]["image"].shape[1:3]
    cell = 1.45
    names = _box_names(label_names)
    fig = _figure(len(ts) * cell * min(w0 / h0, 2.0) + 0.3, rows * cell + 0.7)
    seen: dict[int, str] = {}
    for c, example in enumerate(examples):
        video = example["image"]
        h, w = video.shape[1:3]
        max_id = int(np.max(example["instance_map"])) if "instance_map" in example else 0
        icolours = instance_colours(max(max_id, 1))
        for k, t in enumerate(ts):
            ax = fig.add_subplot(rows, len(ts), (c * rows_per) * len(ts) + k + 1)
            _clean_axes(ax)
            ax.imshow(video[t], interpolation="nearest")
            boxes, labels, insts = _frame_boxes(example, t)
            draw_boxes(ax, boxes, labels, insts, names, h, w, fontsize=5.5)
            for label in labels:
                seen[int(label)] = _name(names, int(label))
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            if c == 0:
                ax.set_title(f"t = {t}", fontsize=7, pad=2)
            if k == 0:
                ax.set_ylabel(f"clip {c}", fontsize=8, fontweight="bold")
            for r, key in enumerate(extra, start=1):
                ax = fig.add_subplot(rows, len(ts), (c * rows_per + r) * len(ts) + k + 1)
                _clean_axes(ax)
                if key == "instance_map":
                    ax.imshow(icolours[np.clip(example[key][t], 0, max_id)], interpolation="nearest")
                else:
                    ax.imshow(colour_depth(np.asarray(example[key][t])), interpolation="nearest")
                if k == 0:
                    ax.set_ylabel("instances" if key == "instance_map" else key, fontsize=8)
    _suptitle(fig, *fig_args)
    _legend(fig, seen)
    return fig


def kind_of(example: Mapping[str, np.ndarray]) -> str:
    """'video', 'dense' or 'classification', from the keys and shapes of an example."""
    if np.ndim(example["image"]) == 4:
        return "video"
    if any(k in example for k in DENSE_KEYS) or "boxes" in example:
        return "dense"
    return "classification"


def preview(variant: str, options: dict | None = None, out: str = "preview.png", n: int | None = None,
            split: str = "train", cols: int | None = None, dpi: int = 110) -> str:
    """Renders `n` examples of a variant (indices 0..n-1 of `split`) into a PNG at `out`."""
    spec = builder.get_variant(variant)
    opts = builder.validate_options(variant, options)
    sizes = spec.split_sizes(opts)
    if split not in sizes:
        raise DataError(f"unknown split {split!r} for the preview of toyworld:{variant}; valid: "
                        + ", ".join(sorted(sizes)))
    if int(sizes[split]) <= 0:
        raise DataError(f"split {split!r} of toyworld:{variant} is empty for these options")
    first = spec.example(opts, split, 0)
    video = kind_of(first) == "video"
    if n is None:
        n = 3 if video else 8
    if n < 1:
        raise DataError(f"the number of preview samples must be >= 1, got {n}")
    n = min(n, int(sizes[split]))
    examples = [first] + [spec.example(opts, split, i) for i in range(1, n)]
    examples = [{k: np.asarray(v) for k, v in e.items()} for e in examples]
    label_names = spec.label_names(opts)
    fig_args = (variant, options_text(variant, opts), split)
    kind = kind_of(first)
    if kind == "video":
        fig = _grid_video(fig_args, examples, label_names)
    elif kind == "dense":
        fig = _grid_dense(fig_args, examples, label_names)
    else:
        rows = math.ceil(n / 6)
        fig = _grid_classification(fig_args, examples, label_names, cols or math.ceil(n / rows))
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white")
    return out
