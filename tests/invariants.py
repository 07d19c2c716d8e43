"""The shared invariant checks of every garden model, layer and task (specs/anchors.md, sec. 6).

One module, used by every model test instead of copies. Each `check_*` raises AssertionError
with a message naming what broke and returns something useful (the revived object, the eager
outputs, the counts, the loss) so a test can go on from it.

    from tests import invariants as inv

    model = resnet20(width_multiplier=0.25)
    inv.check_config_round_trip(model)
    inv.check_symbolic_matches_eager(model, (32, 32, 3))
    inv.check_train_step(model, x, y)
    inv.check_keras_save_load(model, x, tmp_path)
    inv.check_mixed_precision(lambda **kw: resnet20(width_multiplier=0.25, **kw), x)
    inv.check_param_count(resnet20(), 271_098, (32, 32, 3), trainable=269_722)
    # or all of 1, 2, 4, 5, 8 at once:
    tiny = lambda **kw: resnet20(width_multiplier=0.25, **kw)
    inv.check_model_invariants(tiny, (32, 32, 3), tmp_path)

Invariants (anchors sec. 6) and where they are:
  1. config round trip, JSON-serialisable .......... check_config_round_trip
  2. symbolic and eager shapes/dtypes agree ........ check_symbolic_matches_eager
     (graph-mode call equals eager ............... check_graph_matches_eager)
  3. exact parameter counts ........................ check_param_count
  4. one training step: finite loss, a gradient
     for every trainable weight .................... check_train_step (check_fit_step for
                                                     tasks with their own train_step)
  5. .keras save/load gives equal outputs .......... check_keras_save_load
  6. SavedModel outputs equal model(x) ............. EXPORT CHECKS section at the end
  7. ONNX (onnxruntime) outputs match .............. EXPORT CHECKS section at the end
  8. mixed-precision dtypes hold ................... check_mixed_precision
  Backbones (garden.nn.layers.Backbone) also get check_backbone_api / check_feature_info.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# Helpers


def _is_shape(spec) -> bool:
    return isinstance(spec, (tuple, list)) and all(
        d is None or isinstance(d, (int, np.integer)) for d in spec
    )


def _map_shapes(fn, spec):
    """Apply fn to every shape (a tuple of ints/None) in a nest of dicts/lists of shapes."""
    if _is_shape(spec):
        return fn(tuple(spec))
    if isinstance(spec, dict):
        return {k: _map_shapes(fn, v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_map_shapes(fn, v) for v in spec)
    raise TypeError(f"not a shape or a nest of shapes: {spec!r}")


def random_inputs(input_shape, batch_size=2, dtype="float32", seed=0):
    """Random inputs for a shape (without batch) or a nest of shapes: normal floats, or
    integers in [0, 255] for integer dtypes."""
    rng = np.random.default_rng(seed)

    def make(shape):
        shape = (batch_size,) + tuple(1 if d is None else d for d in shape)
        if np.issubdtype(np.dtype(dtype), np.integer):
            return rng.integers(0, 256, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    return _map_shapes(make, input_shape)


def _flatten_with_paths(tree):
    return keras.tree.flatten_with_path(tree)


def _path_name(path) -> str:
    return "/".join(str(p) for p in path) or "<output>"


def to_numpy(tree):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), tree)


def assert_trees_close(actual, expected, *, atol=1e-6, rtol=1e-6, what="outputs"):
    """Same structure, shapes and values (within atol + rtol*|expected|) for two nests."""
    keras.tree.assert_same_structure(actual, expected)
    for (path, a), (_, e) in zip(
        _flatten_with_paths(to_numpy(actual)), _flatten_with_paths(to_numpy(expected))
    ):
        name = _path_name(path)
        assert a.shape == e.shape, f"{what} {name}: shape {a.shape} != {e.shape}"
        if np.issubdtype(e.dtype, np.floating):
            diff = np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)), initial=0.0)
            np.testing.assert_allclose(
                a, e, atol=atol, rtol=rtol, err_msg=f"{what} {name}: max |diff| {diff:.3g}"
            )
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} {name}")


def _dtype_name(t) -> str:
    return keras.backend.standardize_dtype(t.dtype)


def _is_float(t) -> bool:
    return "float" in _dtype_name(t)


# --------------------------------------------------------------------------------------------
# 1. Config round trip


def check_config_round_trip(obj):
    """get_config() is JSON-serialisable; `from_config` of its JSON gives the same class and
    config; `keras.saving` (de)serialisation through JSON finds the class (it is registered
    with `@keras.saving.register_keras_serializable`, as `.keras` loading needs). Returns the
    object revived by `from_config`."""
    config = obj.get_config()
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as error:
        raise AssertionError(f"{type(obj).__name__}.get_config() is not JSON: {error}") from None
    revived = type(obj).from_config(json.loads(text))
    assert type(revived) is type(obj), f"from_config gave {type(revived)}, not {type(obj)}"
    assert json.dumps(revived.get_config(), sort_keys=True) == text, (
        f"{type(obj).__name__}: from_config(get_config()).get_config() differs:\n"
        f"{json.dumps(revived.get_config(), sort_keys=True)}\n!=\n{text}"
    )
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    assert json.dumps(serialized["config"], sort_keys=True) == text
    # What deserialize_keras_object does first (without building a second object).
    found = keras.saving.get_registered_object(serialized.get("registered_name"))
    assert found is type(obj), (
        f"{serialized.get('registered_name')!r} resolves to {found}, not {type(obj)}: register "
        f"{type(obj).__name__} with keras.saving.register_keras_serializable"
    )
    return revived


# --------------------------------------------------------------------------------------------
# 2. Symbolic and eager outputs agree


def check_symbolic_matches_eager(
    model, input_shape, *, batch_size=2, input_dtype="float32", inputs=None, training=False
):
    """Calling `model` on `keras.Input`s gives the same output structure, dtypes and non-batch
    shapes as an eager call on concrete inputs of `input_shape` (no batch dimension; or a nest
    of such shapes for multi-input models). Returns the eager outputs."""
    symbolic_inputs = _map_shapes(lambda s: keras.Input(shape=s, dtype=input_dtype), input_shape)
    symbolic = model(symbolic_inputs, training=training)
    if inputs is None:
        inputs = random_inputs(input_shape, batch_size, input_dtype)
    eager = model(inputs, training=training)
    keras.tree.assert_same_structure(symbolic, eager)
    unknown = []
    _map_shapes(lambda s: unknown.append(None in s), input_shape)
    input_has_unknown = any(unknown)
    for (path, s), (_, e) in zip(_flatten_with_paths(symbolic), _flatten_with_paths(eager)):
        name = _path_name(path)
        s_shape, e_shape = tuple(s.shape), tuple(e.shape)
        assert len(s_shape) == len(e_shape), f"output {name}: rank {s_shape} vs eager {e_shape}"
        if s_shape and s_shape[0] is None:
            assert e_shape[0] == batch_size, f"output {name}: batch {e_shape[0]} != {batch_size}"
            s_shape, e_shape = s_shape[1:], e_shape[1:]
        for sd, ed in zip(s_shape, e_shape):
            if sd is None and input_has_unknown:
                continue
            assert sd == ed, f"output {name}: symbolic shape {s.shape} != eager {e.shape}"
        assert _dtype_name(s) == _dtype_name(
            e
        ), f"output {name}: symbolic dtype {_dtype_name(s)} != eager {_dtype_name(e)}"
    return eager


def check_graph_matches_eager(model, inputs, *, atol=1e-5, rtol=1e-5, jit_compile=False):
    """`model(x, training=False)` traced by tf.function (what fit, SavedModel and ONNX export
    see: no Python control flow on tensors) equals the eager call."""
    eager = model(inputs, training=False)
    graph = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)(inputs)
    assert_trees_close(graph, eager, atol=atol, rtol=rtol, what="graph vs eager")
    return eager


# --------------------------------------------------------------------------------------------
# 3. Parameter counts


def param_counts(model) -> dict[str, int]:
    """{"total": count_params(), "trainable": ..., "non_trainable": ...} (BN moving statistics
    are non-trainable; papers and torchvision count `trainable` only)."""

    def size(weights):
        return sum(math.prod(w.shape) for w in weights)

    return {
        "total": int(model.count_params()),
        "trainable": int(size(model.trainable_weights)),
        "non_trainable": int(size(model.non_trainable_weights)),
    }


def check_param_count(
    model, expected=None, input_shape=None, *, trainable=None, input_dtype="float32"
):
    """The model, built on `input_shape` (no batch dimension) if not yet built, has exactly
    `expected` parameters (`count_params()`, BN moving statistics included) and, if given,
    `trainable` trainable ones. Returns the counts (see `param_counts`)."""
    if not model.built:
        assert input_shape is not None, "an unbuilt model needs input_shape"
        model(_map_shapes(lambda s: keras.Input(shape=s, dtype=input_dtype), input_shape))
    counts = param_counts(model)
    if expected is not None:
        assert counts["total"] == expected, f"count_params() {counts} != expected {expected:,}"
    if trainable is not None:
        assert counts["trainable"] == trainable, f"trainable {counts} != expected {trainable:,}"
    return counts


# --------------------------------------------------------------------------------------------
# 4. One training step


def default_loss(y, outputs):
    """Sum over outputs of: sparse softmax cross-entropy from logits when `y` is an integer
    label per example/pixel (rank one less than the output), otherwise mean squared error."""
    keras.tree.assert_same_structure(y, outputs)
    total = 0.0
    for target, out in zip(keras.tree.flatten(y), keras.tree.flatten(outputs)):
        out = keras.ops.cast(out, "float32")
        target = keras.ops.convert_to_tensor(target)
        if "int" in _dtype_name(target) and len(target.shape) == len(out.shape) - 1:
            loss = keras.losses.sparse_categorical_crossentropy(target, out, from_logits=True)
        else:
            loss = keras.ops.square(out - keras.ops.cast(target, "float32"))
        total = total + keras.ops.mean(loss)
    return total


def check_train_step(model, x, y_or_loss_fn, *, optimizer=None, require_nonzero=False):
    """One optimiser step on (x, y): the loss is finite and EVERY trainable weight gets a
    gradient that is not None and finite (and not all zero with `require_nonzero`); after the
    step all weights are finite.

    `y_or_loss_fn`: targets for `default_loss`; or a callable `loss_fn(outputs)`; or None for a
    model that computes its own loss (`model.compute_loss(x=x, y=None, y_pred=...)`, e.g. a
    task). Layer losses (`model.losses`, e.g. a gate's target-rate loss) are added.
    Returns the loss (float).
    """
    optimizer = optimizer or keras.optimizers.SGD(learning_rate=0.01)
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
        if y_or_loss_fn is None:
            loss = model.compute_loss(x=x, y=None, y_pred=outputs, training=True)
        else:
            if callable(y_or_loss_fn):
                loss = y_or_loss_fn(outputs)
            else:
                loss = default_loss(y_or_loss_fn, outputs)
            if model.losses:
                loss = loss + sum(keras.ops.cast(term, "float32") for term in model.losses)
    loss_value = float(keras.ops.convert_to_numpy(loss))
    assert np.isfinite(loss_value), f"loss is not finite: {loss_value}"
    variables = model.trainable_variables
    assert variables, "the model has no trainable variables"
    grads = tape.gradient(loss, variables)
    missing = [v.path for v, g in zip(variables, grads) if g is None]
    assert not missing, f"{len(missing)} trainable weights get no gradient: {missing}"
    grads = [tf.convert_to_tensor(g) for g in grads]
    bad = [v.path for v, g in zip(variables, grads) if not np.all(np.isfinite(g.numpy()))]
    assert not bad, f"non-finite gradients for {bad}"
    if require_nonzero:
        zero = [v.path for v, g in zip(variables, grads) if not np.any(g.numpy())]
        assert not zero, f"all-zero gradients for {zero}"
    optimizer.apply_gradients(zip(grads, variables))
    bad = [v.path for v in model.variables if _is_float(v) and not np.all(np.isfinite(v.numpy()))]
    assert not bad, f"non-finite weights after one step: {bad}"
    return loss_value


def check_fit_step(model, x, y=None, *, optimizer=None, loss=None, steps=1):
    """`model.fit` runs `steps` steps (graph mode, the real training path) with a finite loss,
    and every trainable weight changes (plain SGD: a weight that does not change got a zero or
    no gradient). For tasks with their own `train_step`/`compute_loss`, leave `loss` None and
    compile them yourself or let this compile them with SGD. Returns the fit history dict."""
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    if not model.compiled or optimizer is not None or loss is not None:
        model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.01), loss=loss)
    data = tf.data.Dataset.from_tensors((x,) if y is None else (x, y)).repeat(steps)
    history = model.fit(data, epochs=1, verbose=0).history
    losses = history.get("loss", [])
    assert losses and all(np.isfinite(losses)), f"fit loss not finite: {history}"
    unchanged = [
        v.path
        for v, b in zip(model.trainable_variables, before)
        if np.array_equal(np.asarray(v.numpy()), b)
    ]
    assert not unchanged, f"{len(unchanged)} trainable weights did not change: {unchanged}"
    return history


# --------------------------------------------------------------------------------------------
# 5. .keras save and load


def check_keras_save_load(model, x, tmp_path, *, atol=1e-6, rtol=1e-6, filename="model.keras"):
    """`model.save(...keras)` then `keras.models.load_model` gives an object of the same class
    whose `model(x, training=False)` equals the original's (atol = rtol = 1e-6, as keras-hub).
    Returns the restored model."""
    expected = model(x, training=False)
    path = os.path.join(os.fspath(tmp_path), filename)
    model.save(path)
    restored = keras.models.load_model(path, compile=False)
    assert type(restored) is type(model), f"loaded {type(restored)}, saved {type(model)}"
    assert_trees_close(restored(x, training=False), expected, atol=atol, rtol=rtol, what="reloaded")
    return restored


# --------------------------------------------------------------------------------------------
# 8. Mixed precision


def check_mixed_precision(
    model_factory, x, *, policy="mixed_float16", via="global", output_dtype=None
):
    """A model made under `policy` computes in its compute dtype and keeps float32 variables.

    via="global": `model_factory()` under `keras.config.set_dtype_policy(policy)`;
    via="argument": `model_factory(dtype=policy)` with the global policy untouched, which also
    checks that every sublayer received the policy. Checked: every floating output has
    `output_dtype` (default: the policy's compute dtype), every floating weight has the
    variable dtype, and every sublayer carries the policy. Returns the model.
    """
    policy = keras.DTypePolicy(policy)
    previous = keras.config.dtype_policy()
    try:
        if via == "global":
            keras.config.set_dtype_policy(policy)
            model = model_factory()
        elif via == "argument":
            model = model_factory(dtype=policy.name)
        else:
            raise ValueError(f"via must be 'global' or 'argument', got {via!r}")
        outputs = model(x, training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    expected = output_dtype or policy.compute_dtype
    for path, out in _flatten_with_paths(outputs):
        if _is_float(out):
            assert _dtype_name(out) == expected, (
                f"output {_path_name(path)} is {_dtype_name(out)} under {policy.name}, "
                f"expected {expected}"
            )
    wrong = [
        (w.path, w.dtype)
        for w in model.weights
        if _is_float(w) and w.dtype != policy.variable_dtype
    ]
    assert not wrong, f"weights not in {policy.variable_dtype}: {wrong}"
    wrong = [
        layer.name
        for layer in model._flatten_layers(include_self=True)
        if layer.dtype_policy.name != policy.name
    ]
    assert not wrong, f"layers without the {policy.name} policy: {wrong}"
    return model


# --------------------------------------------------------------------------------------------
# Backbones (garden.nn.layers.Backbone): the uniform API


def check_feature_info(model, input_shape, *, exact_strides=True, feats=None):
    """`model.features(...)` keys, channels and (with `exact_strides`) spatial sizes
    ceil(H / stride) follow `model.feature_info`. Computed symbolically on `input_shape` (no
    batch dimension; cheap) unless `feats` (an eager features dict) is given."""
    if feats is None:
        feats = model.features(keras.Input(shape=input_shape), training=False)
    info = model.feature_info
    assert list(feats) == [i["key"] for i in info], f"features {list(feats)} vs {info}"
    height, width = input_shape[0], input_shape[1]
    for i in info:
        f = feats[i["key"]]
        assert f.shape[-1] == i["channels"], f"{i['key']}: {f.shape} vs {i}"
        if exact_strides:
            expected = (math.ceil(height / i["stride"]), math.ceil(width / i["stride"]))
            assert tuple(f.shape[1:3]) == expected, f"{i['key']}: {f.shape} vs stride {i['stride']}"
    return feats


def check_backbone_api(model, x, *, exact_strides=True, variants=True, atol=1e-5):
    """For a `Backbone` on inputs x [B, H, W, C]:
    - `features(x)` keys, channels and (with `exact_strides`) spatial sizes ceil(H / stride)
      follow `feature_info`; its last entry equals `forward_features(x)`;
    - with `include_top` and `num_classes`, `model(x)` is [B, num_classes];
    - with `variants`: the same config with `num_classes=0` returns [B, num_features], and
      with `include_top=False` returns the final feature map (two more models are built).
    Returns the features dict."""
    feats = model.features(x, training=False)
    check_feature_info(model, tuple(x.shape[1:]), exact_strides=exact_strides, feats=feats)
    info = model.feature_info
    final = model.forward_features(x, training=False)
    assert_trees_close(final, feats[info[-1]["key"]], atol=atol, rtol=atol, what="final features")
    if model.include_top and model.num_classes:
        out = model(x, training=False)
        assert tuple(out.shape) == (x.shape[0], model.num_classes)
    if not variants:
        return feats
    config = model.get_config()
    headless = type(model).from_config({**config, "num_classes": 0, "include_top": True})
    pooled = headless(x, training=False)
    assert tuple(pooled.shape) == (
        x.shape[0],
        model.num_features,
    ), f"num_classes=0 gives {pooled.shape}, expected [B, {model.num_features}]"
    topless = type(model).from_config({**config, "include_top": False})
    fmap = topless(x, training=False)
    assert tuple(fmap.shape) == tuple(
        final.shape
    ), f"include_top=False {fmap.shape} vs {final.shape}"
    return feats


# --------------------------------------------------------------------------------------------
# All of the above at once


def check_model_invariants(
    model_factory,
    input_shape,
    tmp_path,
    *,
    y=None,
    batch_size=2,
    mixed_precision=True,
    graph=True,
    backbone_kwargs=None,
):
    """Invariants 1, 2, 4, 5, 8 (and the graph-mode call) for `model_factory(**kw)` on random
    inputs of `input_shape` (no batch dimension). `y`: targets for `default_loss` (default:
    class ids 0..batch-1, for a classifier). `backbone_kwargs`: arguments of
    `check_backbone_api` (None: run it when the model has `features`). Returns the model."""
    model = model_factory()
    x = random_inputs(input_shape, batch_size)
    check_symbolic_matches_eager(model, input_shape, inputs=x)
    check_config_round_trip(model)
    if graph:
        check_graph_matches_eager(model, x)
    if hasattr(model, "features") and hasattr(model, "feature_info"):
        check_backbone_api(model, x, **(backbone_kwargs or {}))
    check_train_step(model, x, np.arange(batch_size) if y is None else y)
    check_keras_save_load(model, x, tmp_path)
    if mixed_precision:
        check_mixed_precision(model_factory, x, via="argument")
    return model


# --------------------------------------------------------------------------------------------
# 6, 7. EXPORT CHECKS (SavedModel and ONNX parity), through the real export stage
# --------------------------------------------------------------------------------------------


class _ModelServing:
    """Serve a bare model's `call(x, training=False)` under the task contract, for export checks."""

    def __init__(self, model, input_shape):
        self.model, self.input_shape = model, tuple(input_shape)

    def serving_inputs(self):
        return {"inputs": tf.TensorSpec([None, *self.input_shape], tf.float32)}

    def serve(self, inputs):
        outputs = self.model(inputs["inputs"], training=False)
        outputs = outputs if isinstance(outputs, dict) else {"outputs": outputs}
        return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}

    def export_model(self):
        return self.model

    def to_serving_inputs(self, features):
        return {"inputs": np.asarray(features["inputs"], np.float32)}


def check_export_parity(model_or_task, x, tmp_path, atol: float = 1e-4) -> dict:
    """Invariants 6 and 7: the SavedModel and the ONNX model reproduce `model(x, training=False)`.

    A task (anything with `serve`) is exported as it is; a bare model is served as
    `{"outputs": model(inputs)}`. Runs the garden's export stage, which itself fails above
    `atol`; returns its manifest.
    """
    from export import export_task

    if hasattr(model_or_task, "serve"):
        served, features = model_or_task, x
    else:
        model_or_task(x[:1], training=False)
        served, features = _ModelServing(model_or_task, np.shape(x)[1:]), {"inputs": x}
    manifest = export_task(served, workdir=os.fspath(tmp_path), name="model", tolerance=atol,
                           sample_features=features)
    for fmt in ("saved_model", "onnx"):
        assert manifest["parity"][fmt]["max_abs_diff_overall"] <= atol, manifest["parity"]
    return manifest


def onnx_op_types(graph) -> list[str]:
    """Every node type of an ONNX graph, its subgraphs' (If branches') included."""
    from export.onnx_graph import walk

    return [node.op_type for node in walk(graph)]


def check_short_run(code, out, err, workdir, *, export_name, version, formats, tolerance, steps=2) -> dict:
    """A short `cli.main` train_and_export run: it exited cleanly, trained exactly `steps`
    steps, tested to finite metrics, and exported every format with parity within `tolerance`.
    Returns the run's metrics and export manifest."""
    from pathlib import Path

    workdir = Path(workdir)
    assert code == 0, err[-3000:]
    assert "train_and_export done" in out, out[-2000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["global_step"] == steps
    assert metrics["test"] and all(math.isfinite(v) for v in metrics["test"].values()), metrics["test"]
    export = workdir / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    if "saved_model" in formats:
        assert (export / "saved_model" / export_name / str(version) / "saved_model.pb").is_file()
    if "onnx" in formats:
        assert (export / f"{export_name}.onnx").is_file()
    for fmt in formats:
        assert manifest["parity"][fmt]["max_abs_diff_overall"] <= tolerance, manifest["parity"]
    return {"metrics": metrics, "manifest": manifest}
