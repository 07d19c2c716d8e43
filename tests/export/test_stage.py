"""The export stage on a small task: layout, parity, fresh-process loading, failure safety."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import export.stage
from export import ExportError, export_task


class TinyTask(keras.Model):
    """The smallest object honouring the task contract's export half."""

    def __init__(self):
        super().__init__()
        self.net = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                     keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
                                     keras.layers.Dense(3)])

    def serving_inputs(self):
        return {"images": tf.TensorSpec([None, 8, 8, 3], tf.uint8)}

    def serve(self, inputs):
        logits = self.net(tf.cast(inputs["images"], tf.float32) / 255.0, training=False)
        probabilities = tf.nn.softmax(logits)
        return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, -1, output_type=tf.int32)}

    def export_model(self):
        return self.net


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (4, 8, 8, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, features):
    workdir = str(tmp_path_factory.mktemp("run"))
    manifest = export_task(TinyTask(), workdir=workdir, name="tiny", version=3, sample_features=features)
    return workdir, manifest


def test_layout_and_manifest(exported):
    workdir, manifest = exported
    assert os.path.isfile(os.path.join(workdir, "export", "saved_model", "tiny", "3", "saved_model.pb"))
    assert os.path.isfile(os.path.join(workdir, "export", "tiny.onnx"))
    on_disk = json.load(open(os.path.join(workdir, "export", "manifest.json")))
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 8, 8, 3]}}
    assert set(manifest["outputs"]) == {"probabilities", "class_id"}
    for fmt in ("saved_model", "onnx"):
        assert manifest["parity"][fmt]["max_abs_diff_overall"] <= 1e-4
        assert manifest["parity"][fmt]["integer_mismatches"]["class_id"] == 0
    assert {"tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx"} <= set(manifest["versions"])
    assert not [p for p in os.listdir(workdir) if "staging" in p]


def test_saved_model_loads_in_fresh_process_with_tensorflow_alone(exported, features):
    workdir, _ = exported
    path = os.path.join(workdir, "export", "saved_model", "tiny", "3")
    code = ("import sys, numpy as np, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "x = np.load(sys.argv[2])\n"
            "out = m.signatures['serving_default'](images=tf.constant(x))\n"
            "assert not any(name.startswith(('garden', 'export')) for name in sys.modules), 'garden imported'\n"
            "print(repr(out['probabilities'].numpy().tolist()))\n")
    x = features["image"].astype(np.uint8)
    np.save(os.path.join(workdir, "x.npy"), x)
    result = subprocess.run([sys.executable, "-c", code, path, os.path.join(workdir, "x.npy")],
                            capture_output=True, text=True, check=True, cwd=workdir)
    fresh = np.array(eval(result.stdout.strip().splitlines()[-1]))
    reference = export.stage.run_saved_model(path, {"images": x})["probabilities"]
    np.testing.assert_allclose(fresh, reference, atol=1e-6)


def test_saved_model_cli_lists_the_signature(exported):
    workdir, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", os.path.join(workdir, "export", "saved_model", "tiny", "3")],
                            capture_output=True, text=True, check=True)
    assert "serving_default" in result.stdout and "images" in result.stdout and "probabilities" in result.stdout


def test_onnx_passes_checker_and_names_io(exported):
    import onnx
    workdir, _ = exported
    model = onnx.load(os.path.join(workdir, "export", "tiny.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["images"]
    assert {o.name for o in model.graph.output} == {"probabilities", "class_id"}


def test_parity_failure_raises_and_keeps_previous_export(exported, features, monkeypatch):
    workdir, manifest = exported
    before = open(os.path.join(workdir, "export", "manifest.json")).read()

    def skewed(path, inputs):
        out = export.onnx_model.run_onnx(path, inputs)
        out["probabilities"] = out["probabilities"] + 1e-2
        return out

    monkeypatch.setattr(export.stage, "run_onnx", skewed)
    with pytest.raises(ExportError, match=r"onnx 0\.01 > tolerance"):
        export_task(TinyTask(), workdir=workdir, name="tiny", version=3, sample_features=features)
    assert open(os.path.join(workdir, "export", "manifest.json")).read() == before
    assert not [p for p in os.listdir(workdir) if "staging" in p]


@pytest.mark.parametrize("batch_size, rows", [(3, 3), (6, 6)], ids=["fewer_than_given", "more_than_given"])
def test_fixed_batch_size(tmp_path, features, batch_size, rows):
    """export.batch_size fixes the signature's batch dimension in both artifacts; parity runs on
    whole batches (the 4 parity inputs cut to 3, or repeated to fill 6)."""
    import onnx

    manifest = export_task(TinyTask(), workdir=str(tmp_path), name="tiny", sample_features=features,
                           batch_size=batch_size)
    assert manifest["inputs"]["images"]["shape"] == [batch_size, 8, 8, 3]
    assert manifest["outputs"]["probabilities"]["shape"] == [batch_size, 3]
    assert manifest["parity"]["num_examples"] == rows
    graph = onnx.load(os.path.join(str(tmp_path), "export", "tiny.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == batch_size
    loaded = tf.saved_model.load(os.path.join(str(tmp_path), "export", "saved_model", "tiny", "1"))
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [batch_size, 8, 8, 3]


def test_bad_batch_size_is_one_line_error(tmp_path, features):
    with pytest.raises(ExportError, match=r"export batch size must be >= 1 or None \(any\), got 0"):
        export_task(TinyTask(), workdir=str(tmp_path), name="tiny", sample_features=features, batch_size=0)
    assert not os.path.exists(os.path.join(str(tmp_path), "export"))


def test_unknown_format_is_one_line_error(tmp_path, features):
    with pytest.raises(ExportError, match=r"unknown export format\(s\) \['tflite'\]; valid: saved_model, onnx"):
        export_task(TinyTask(), workdir=str(tmp_path), name="tiny", formats=("tflite",), sample_features=features)
