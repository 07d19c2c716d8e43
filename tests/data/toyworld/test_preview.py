"""Preview grids and the `python -m garden.data.toyworld` CLI (tiny sizes)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from garden.data.toyworld import __main__ as cli
from garden.data.toyworld import preview

TINY = {
    "objects": {"image_size": 16, "num_train": 4, "num_validation": 2, "num_test": 2},
    "attributes": {"image_size": 16, "num_train": 4, "num_validation": 2, "num_test": 2},
    "scenes": {"image_size": 24, "num_train": 3, "num_validation": 1, "num_test": 1,
               "max_objects": 2},
    "video": {"image_size": 16, "num_train": 2, "num_validation": 1, "num_test": 1,
              "num_frames": 2, "max_objects": 2},
}


def _sets(options):
    return [arg for k, v in options.items() for arg in ("--set", f"{k}={v}")]


@pytest.mark.parametrize("variant", sorted(TINY))
def test_preview_writes_png(variant, tmp_path, capsys):
    out = tmp_path / "sub" / f"{variant}.png"
    n = 2
    code = cli.main(["preview", "--variant", variant, "--out", str(out), "--n", str(n),
                     *_sets(TINY[variant])])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width > 100 and height > 100
    assert pixels.std() > 5  # not a blank canvas


def test_preview_photo_and_split(tmp_path):
    out = preview.preview("objects", {**TINY["objects"], "style": "photo"},
                          out=str(tmp_path / "p.png"), n=2, split="test")
    assert os.path.getsize(out) > 1000


def test_title_lines_use_label_names():
    example = {"label": np.int64(1), "category": np.int64(1), "instance": np.int64(3),
               "azimuth_deg": np.float32(59.6), "lighting": np.int64(0)}
    names = {"label": ["car", "truck"], "category": ["car", "truck"],
             "instance": ["car_000", "car_001", "truck_000", "truck_001"],
             "lighting": ["front"]}
    lines = preview.title_lines(example, names)
    assert lines[0].startswith("truck")
    text = " ".join(lines)
    assert "truck_001" in text and "60°" in text and "front" in text
    assert text.count("truck ·") + text.count("truck\n") <= 1  # label shown once


def test_colour_maps():
    depth = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    rgb = preview.colour_depth(depth)
    assert rgb.shape == (2, 2, 3) and np.all(rgb[0, 0] == 0) and rgb[0, 1].sum() > rgb[1, 1].sum()
    normals = np.zeros((1, 2, 3), np.float32)
    normals[0, 1] = (0.0, 0.0, -1.0)
    out = preview.colour_normals(normals)
    assert np.all(out[0, 0] == 0) and np.allclose(out[0, 1], (0.5, 0.5, 0.0))
    seg = preview.colour_segmentation(np.array([[0, 1, 2, 3, 4]]), 5)
    assert len({tuple(c) for c in seg[0]}) == 5


@pytest.mark.parametrize("argv, expected", [
    (["preview", "--variant", "scene"], "did you mean 'scenes'"),
    (["preview", "--variant", "scenes", "--set", "image_sise=16"], "did you mean 'image_size'"),
    (["preview", "--variant", "scenes", "--set", "image_size=2"], "image_size"),
    (["preview", "--variant", "scenes", "--set", "oops"], "expected key=value"),
    (["preview", "--variant", "scenes", "--split", "trian"], "'trian'"),
    (["preview", "--variant", "scenes", "--n", "0"], "--n"),
    (["preview", "--variant", "scenes", "--n", "x"], "--n"),
    (["preview"], "--variant"),
    (["previw"], "invalid choice"),
    ([], "missing command"),
    (["generate", "--variant", "objects", "--set", "num_trian=3"], "num_train"),
])
def test_bad_cli_input_exits_2_with_one_line(argv, expected, capsys, tmp_path):
    code = cli.main([*argv, *(["--out", str(tmp_path / "x.png")] if argv[:1] == ["preview"]
                              and "--variant" in argv else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert expected in err
    assert not os.listdir(tmp_path)


def test_list_prints_variants_and_defaults(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("objects", "attributes", "scenes", "video"):
        assert f"\n{name}:" in out and f"toyworld_{name}" in out
    assert "image_size" in out and "num_train" in out and "style" in out


def test_generate_then_info(tmp_path, capsys):
    d = str(tmp_path)
    sets = _sets(TINY["attributes"])
    assert cli.main(["generate", "--variant", "attributes", "--data-dir", d, *sets]) == 0
    out = capsys.readouterr().out
    assert "generated" in out and "train 4" in out and "MiB" in out
    assert cli.main(["generate", "--variant", "attributes", "--data-dir", d, *sets]) == 0
    assert "already cached" in capsys.readouterr().out
    assert cli.main(["info", "--variant", "attributes", "--data-dir", d, *sets]) == 0
    assert '"cached": true' in capsys.readouterr().out


def test_module_entry_point(tmp_path):
    out = tmp_path / "cli.png"
    result = subprocess.run(
        [sys.executable, "-m", "garden.data.toyworld", "preview", "--variant", "attributes",
         "--out", str(out), "--n", "2", *_sets(TINY["attributes"])],
        capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file()
    bad = subprocess.run([sys.executable, "-m", "garden.data.toyworld", "preview", "--variant", "x"],
                         capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown toyworld variant 'x'")


def test_data_guide_lists_every_option_and_preview():
    from garden.data.toyworld import builder

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    with open(os.path.join(root, "docs", "data.md"), encoding="utf-8") as f:
        guide = f.read()
    variants, _ = builder.catalogue()
    for name, spec in variants.items():
        section = guide.split(f"#### `{name}` options", 1)
        assert len(section) == 2, f"docs/data.md lacks the options table of {name}"
        table = section[1].split("####", 1)[0].split("\n\n", 2)[1]
        for key in spec.Options.model_fields:
            assert f"| `{key}` |" in table, (
                f"docs/data.md: option {name}.{key} missing; regenerate the tables with "
                "`python -m garden.data.toyworld list --markdown`")
        assert os.path.isfile(os.path.join(root, "docs", "images", f"toyworld_{name}.png"))
