"""TFDS builders for the toyworld variants, the on-disk cache and its keys.

One `tfds.core.GeneratorBasedBuilder` per variant is registered on import:
`toyworld_objects`, `toyworld_attributes`, `toyworld_scenes`, `toyworld_video`. So, after
`import garden.data.toyworld`::

    tfds.load("toyworld_objects", split="train[:10%]", data_dir=...)            # default options
    tfds.load("toyworld_scenes", data_dir=...,
              builder_kwargs={"config": ToyworldConfig(options={"image_size": 32})})

Cache layout (TFDS's own): ``<data_dir>/toyworld_<variant>/<config name>/<VERSION>/``, with
the config name ``default_<key>`` (the variant's default options) or ``custom_<key>``, where
``<key>`` is the first 12 hex digits of the sha256 of the canonical JSON of
``{variant, generator_version, options with defaults filled in}``. So a change of any option
or of the variants' ``GENERATOR_VERSION`` gives a new folder and an old cache is never reused.
TFDS writes into an ``incomplete.*`` sibling folder and renames it on success, so a
half-written cache is never read.

``VERSION`` (semver) versions the *stored format* of this builder: major when a stored feature
changes meaning or encoding incompatibly, minor when features are added, patch for
changes that do not touch stored bytes (metadata, docs). Content changes of the renderer or of
the variants are tracked by ``GENERATOR_VERSION`` through the config name instead.

Importing this module imports tensorflow_datasets (no TensorFlow) and nothing heavier:
the variants are imported on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import types
import uuid
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from garden.data.errors import DataError
from garden.errors import did_you_mean, unknown_choice

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# Bumped by hand; see the module docstring for the rule. Documented in docs/data.md.
BUILDER_VERSION = "1.0.0"
RELEASE_NOTES = {
    "1.0.0": "First release: one builder per variant; examples stored in index order.",
}


# --------------------------------------------------------------------------------------
# The catalogue (variants), imported lazily so that importing the builders stays light.


def catalogue() -> tuple[dict[str, Any], str]:
    """`(VARIANTS, GENERATOR_VERSION)` of the variants module (tests replace this function)."""
    try:
        from garden.data.toyworld import variants as variants_module
    except ImportError as err:  # pragma: no cover - only while the variants are missing
        raise DataError(f"the toyworld variants cannot be imported: {err}") from err
    return variants_module.VARIANTS, str(variants_module.GENERATOR_VERSION)


def get_variant(variant: str):
    """The `Variant` named `variant`, or a one-line DataError with the valid names."""
    variants, _ = catalogue()
    if variant not in variants:
        raise DataError(unknown_choice("toyworld variant", variant, variants))
    return variants[variant]


def validate_options(variant: str, options: dict | None):
    """`options` validated by the variant's pydantic `Options` (DataError one-liners)."""
    import pydantic

    spec = get_variant(variant)
    if options is None:
        options = {}
    if isinstance(options, spec.Options):
        return options
    if not isinstance(options, dict):
        raise DataError(f"toyworld:{variant} options must be a mapping of option names to values, "
                        f"got {type(options).__name__}")
    valid = list(spec.Options.model_fields)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise DataError(unknown_choice(f"toyworld:{variant} option", unknown[0], valid))
    try:
        return spec.Options(**options)
    except pydantic.ValidationError as err:
        parts = []
        for e in err.errors():
            key = ".".join(str(p) for p in e.get("loc", ())) or "?"
            top = e["loc"][0] if e.get("loc") else None
            value = options.get(top, e.get("input")) if top is not None else e.get("input")
            parts.append(f"{key}={value!r}: {e['msg']}")
        raise DataError(f"bad toyworld:{variant} option " + "; ".join(parts)) from None


def canonical_options(variant: str, options: dict | None) -> dict:
    """The options with defaults filled in, as plain JSON values."""
    return validate_options(variant, options).model_dump(mode="json")


def cache_key(variant: str, options: dict | None) -> str:
    """12 hex digits identifying (variant, GENERATOR_VERSION, options with defaults)."""
    _, generator_version = catalogue()
    payload = {
        "variant": variant,
        "generator_version": generator_version,
        "options": canonical_options(variant, options),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def config_name(variant: str, options: dict | None) -> str:
    """``default_<key>`` for the variant's default options, else ``custom_<key>``."""
    is_default = canonical_options(variant, options) == canonical_options(variant, {})
    return f"{'default' if is_default else 'custom'}_{cache_key(variant, options)}"


# --------------------------------------------------------------------------------------
# BuilderConfig and builders.


@dataclasses.dataclass(eq=False)
class ToyworldConfig(tfds.core.BuilderConfig):
    """Options of a toyworld variant. The name is derived from the options (cache key);

    any name given here is replaced by it when the config reaches a builder.
    """

    name: str = ""
    options: dict = dataclasses.field(default_factory=dict)


def make_config(variant: str, options: dict | None = None) -> ToyworldConfig:
    """The canonical config (validated options, cache-key name) of a variant."""
    canonical = canonical_options(variant, options)
    _, generator_version = catalogue()
    return ToyworldConfig(
        name=config_name(variant, canonical),
        version=BUILDER_VERSION,
        options=canonical,
        description=f"toyworld:{variant} generator {generator_version} options "
                    + json.dumps(canonical, sort_keys=True),
    )


class _DefaultConfigs:
    """`BUILDER_CONFIGS` computed on access: the default config depends on the variants."""

    def __get__(self, instance, owner):
        return [make_config(owner.VARIANT)]


class ToyworldBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the per-variant builders; `VARIANT` names the variant."""

    VARIANT: ClassVar[str] = ""
    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = RELEASE_NOTES
    BUILDER_CONFIGS = _DefaultConfigs()
    # Nothing is downloaded. TFDS's default `code_path` needs the `importlib_resources`
    # package (not a declared dependency of tensorflow-datasets 4.9.10, absent here) only to
    # find a checksums file, so both are given directly.
    code_path = epath.Path(__file__)
    url_infos = None

    def _create_builder_config(self, builder_config, version):
        del version  # the version is the builder's
        if builder_config is None:
            return make_config(self.VARIANT)
        if isinstance(builder_config, str):
            default = make_config(self.VARIANT)
            if builder_config.split(":")[0] in (default.name, "default"):
                return default
            raise DataError(
                f"unknown config {builder_config!r} of {self.name}: pass "
                f"ToyworldConfig(options={{...}}) (default options: {default.name!r})")
        if isinstance(builder_config, ToyworldConfig):
            return make_config(self.VARIANT, builder_config.options)
        if isinstance(builder_config, dict):  # builder_kwargs={"config": {...options}}
            return make_config(self.VARIANT, builder_config)
        raise DataError(f"config of {self.name} must be a ToyworldConfig, got "
                        f"{type(builder_config).__name__}")

    # -- helpers -------------------------------------------------------------------------

    def _variant(self):
        return get_variant(self.VARIANT)

    def _options(self):
        return validate_options(self.VARIANT, self.builder_config.options)

    # -- tfds hooks ----------------------------------------------------------------------

    def _info(self) -> tfds.core.DatasetInfo:
        variant, options = self._variant(), self._options()
        features = variant.features(options)
        _, generator_version = catalogue()
        metadata = tfds.core.MetadataDict(
            variant=self.VARIANT,
            generator_version=generator_version,
            options=self.builder_config.options,
            label_names={k: list(v) for k, v in variant.label_names(options).items()},
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=(f"toyworld:{self.VARIANT}, procedurally rendered by garden's toyworld "
                         f"(generator {generator_version}). See docs/data.md."),
            features=features,
            supervised_keys=("image", "label") if "label" in features.keys() else None,
            disable_shuffling=True,  # stored in index order: split slices are reproducible
            metadata=metadata,
            homepage="docs/data.md",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        sizes = self._variant().split_sizes(self._options())
        return {split: self._generate_examples(split, int(n))
                for split, n in sizes.items() if int(n) > 0}

    # Worker processes rendering examples; None: $GARDEN_TOYWORLD_WORKERS, else 1. The output
    # does not depend on it (examples are pure functions of (options, split, index)).
    num_workers: int | None = None

    def _generate_examples(self, split: str, num_examples: int):
        workers = resolve_workers(self.num_workers)
        if workers <= 1 or num_examples < 4 * _CHUNK:
            variant, options = self._variant(), self._options()
            for index in range(num_examples):
                yield index, variant.example(options, split, index)
            return
        yield from _parallel_examples(self.VARIANT, self.builder_config.options, split,
                                      num_examples, workers)


_CHUNK = 8  # examples per task of a worker process


def resolve_workers(num_workers: int | None) -> int:
    """`num_workers`, else $GARDEN_TOYWORLD_WORKERS, else 1; 0 or "auto": the usable cores."""
    value = num_workers if num_workers is not None else os.environ.get("GARDEN_TOYWORLD_WORKERS", 1)
    if value in (0, "0", "auto"):
        return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else (os.cpu_count() or 1), 16))
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        raise DataError(f"bad number of toyworld workers {value!r} (GARDEN_TOYWORLD_WORKERS): "
                        "expected an integer >= 1, 0 or 'auto'") from None


def _examples_chunk(variant: str, options: dict, split: str, start: int, stop: int) -> list:
    """Worker task: examples start..stop-1 (runs in a fresh 'spawn' process)."""
    spec = get_variant(variant)
    opts = validate_options(variant, options)
    return [spec.example(opts, split, index) for index in range(start, stop)]


def _parallel_examples(variant: str, options: dict, split: str, num_examples: int, workers: int):
    """(index, example) in index order, rendered by `workers` spawned processes.

    At most 2 chunks per worker are in flight, so memory stays bounded when the TFDS writer
    is slower than the renderers. 'spawn' (not fork): the parent may have TensorFlow loaded.
    """
    import collections
    import concurrent.futures
    import multiprocessing

    starts = iter(range(0, num_examples, _CHUNK))
    pending = collections.deque()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        def submit() -> bool:
            start = next(starts, None)
            if start is None:
                return False
            stop = min(start + _CHUNK, num_examples)
            pending.append((start, pool.submit(_examples_chunk, variant, options, split, start, stop)))
            return True

        for _ in range(2 * workers):
            if not submit():
                break
        while pending:
            start, future = pending.popleft()
            examples = future.result()
            submit()
            for offset, example in enumerate(examples):
                yield start + offset, example


def _builder_class_name(variant: str) -> str:
    return "Toyworld" + "".join(part.capitalize() for part in variant.split("_"))


def _register(variant: str) -> type:
    """Defines (and so registers with TFDS) `toyworld_<variant>`; re-import safe."""
    name = f"toyworld_{variant}"
    registry = getattr(getattr(tfds.core, "registered", None), "_DATASET_REGISTRY", {})
    skip = name in registry  # module re-imported (e.g. importlib.reload): keep the first
    def body(namespace):
        namespace.update({"VARIANT": variant, "__module__": __name__,
                          "__doc__": f"TFDS builder of the toyworld `{variant}` variant."})

    cls = types.new_class(_builder_class_name(variant), (ToyworldBuilder,),
                          {"skip_registration": skip}, body)
    if skip:
        cls.name = name
    return cls


ToyworldObjects = _register("objects")
ToyworldAttributes = _register("attributes")
ToyworldScenes = _register("scenes")
ToyworldVideo = _register("video")
BUILDERS: dict[str, type] = {
    "objects": ToyworldObjects,
    "attributes": ToyworldAttributes,
    "scenes": ToyworldScenes,
    "video": ToyworldVideo,
}


# --------------------------------------------------------------------------------------
# Public entry points.


def make_builder(variant: str, options: dict | None, data_dir: str) -> ToyworldBuilder:
    """The TFDS builder of `variant` with `options`, caching under `data_dir`."""
    get_variant(variant)  # DataError before anything else
    if variant not in BUILDERS:  # a variant added without a builder class
        raise DataError(f"toyworld variant {variant!r} has no TFDS builder; "
                        f"valid: {', '.join(sorted(BUILDERS))}")
    config = ToyworldConfig(options=canonical_options(variant, options))
    return BUILDERS[variant](config=config, data_dir=os.path.expanduser(str(data_dir)))


def cache_dir(variant: str, options: dict | None, data_dir: str) -> str:
    """The folder the cache of (variant, options) lives in (whether or not it exists)."""
    config = make_config(variant, options)
    return os.path.join(os.path.expanduser(str(data_dir)), f"toyworld_{variant}", config.name,
                        BUILDER_VERSION)


def check_split(variant: str, options: dict | None, split: str) -> None:
    """DataError unless `split` is a TFDS split string over the variant's non-empty splits."""
    sizes = {k: int(v) for k, v in get_variant(variant).split_sizes(
        validate_options(variant, options)).items() if int(v) > 0}
    if not isinstance(split, str) or not split.strip():
        raise DataError(f"bad split {split!r} for toyworld:{variant}; valid: "
                        f"{', '.join(sorted(sizes))} (slices like train[:10%] and sums like "
                        "train+validation work too)")
    import re

    names = [re.split(r"\[", part.strip(), maxsplit=1)[0].strip()
             for part in re.split(r"\+", split)]
    for name in names:
        if name in SPLITS and name not in sizes:
            raise DataError(f"split {name!r} of toyworld:{variant} is empty for these options; "
                            f"non-empty: {', '.join(sorted(sizes))}")
        if name not in sizes and name != "all":
            raise DataError(f"unknown split {name!r} for toyworld:{variant}"
                            f"{did_you_mean(name, sizes)}; valid: {', '.join(sorted(sizes))} "
                            "(slices like train[:10%] and sums like train+validation work too)")
    infos = tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0)
        for name, n in sizes.items()])
    try:
        tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    except (ValueError, AssertionError, TypeError) as err:
        detail = str(err).strip().splitlines()
        detail = detail[-1] if detail else type(err).__name__
        raise DataError(f"bad split {split!r} for toyworld:{variant}: {detail} "
                        "(e.g. train, train[:10%], train[10:20], train+validation)") from None


def _cache_problem(builder: ToyworldBuilder) -> str | None:
    """Why a cache that claims to be complete is not usable, or None if it looks fine.

    Cheap checks (no reading of records): every shard file exists and the byte sizes of each
    split's files add up to what was recorded at generation time.
    """
    try:
        splits = builder.info.splits
        if not splits:
            return "no splits recorded"
        for name, split_info in splits.items():
            paths = list(split_info.filepaths)
            if len(paths) != split_info.num_shards:
                return f"split {name}: {len(paths)} files for {split_info.num_shards} shards"
            total = 0
            for path in paths:
                if not os.path.isfile(os.fspath(path)):
                    return f"missing file {os.fspath(path)}"
                total += os.path.getsize(os.fspath(path))
            # TFDS records the serialized example bytes; a TFRecord adds 16 bytes per record.
            recorded = int(split_info.num_bytes)
            framed = recorded + 16 * int(split_info.num_examples)
            if recorded and total not in (recorded, framed):
                return f"split {name}: {total} bytes on disk, {framed} expected"
    except Exception as err:  # noqa: BLE001 - any failure to read the metadata is corruption
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def _remove_corrupt(folder: str, reason: str) -> None:
    """Moves a corrupt cache folder aside (atomic rename), then deletes it."""
    logger.warning("toyworld cache %s is corrupt (%s); regenerating it", folder, reason)
    aside = os.path.join(os.path.dirname(folder),
                         f"corrupt.{uuid.uuid4().hex[:8]}_{os.path.basename(folder)}")
    try:
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    except OSError as err:
        raise DataError(f"corrupt toyworld cache {folder} ({reason}) cannot be removed ({err}); "
                        "delete that folder and it will be regenerated") from None


def prepare(variant: str, options: dict | None, data_dir: str,
            num_workers: int | None = None) -> ToyworldBuilder:
    """The builder with its cache ready: generated on first use, regenerated if corrupt.

    `num_workers` processes render the examples when the cache is generated (default
    $GARDEN_TOYWORLD_WORKERS, else 1; 0 means one per usable core).
    """
    resolve_workers(num_workers)  # a bad value fails before any work
    folder = cache_dir(variant, options, data_dir)
    try:
        builder = make_builder(variant, options, data_dir)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - unreadable dataset_info.json and the like
        if not os.path.isdir(folder):
            raise
        _remove_corrupt(folder, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        builder = make_builder(variant, options, data_dir)
    if builder.is_prepared():
        problem = _cache_problem(builder)
        if problem is None:
            return builder
        _remove_corrupt(folder, problem)
        builder = make_builder(variant, options, data_dir)
    try:
        # Nothing is downloaded; the download manager still makes folders, so give it a
        # throw-away one rather than litter the cache root.
        builder.num_workers = num_workers
        with tempfile.TemporaryDirectory(prefix="toyworld-dl-") as download_dir:
            builder.download_and_prepare(download_dir=download_dir)
    except OSError as err:
        # Another process may have finished the same cache first (the final rename fails).
        again = make_builder(variant, options, data_dir)
        if again.is_prepared() and _cache_problem(again) is None:
            return again
        raise DataError(f"cannot write the toyworld cache under {data_dir}: {err}; set "
                        "data.data_dir or GARDEN_DATA_DIR to a writable folder") from err
    return make_builder(variant, options, data_dir)  # re-reads the written dataset_info


def load_split(variant: str, options: dict | None, split: str, data_dir: str):
    """`tf.data.Dataset` of decoded example dicts of one split (TFDS split strings work).

    Generates and caches the variant under `data_dir` on first use; later calls read the
    cache. Bad variant, options or split raise a one-line `DataError`.
    """
    get_variant(variant)
    validate_options(variant, options)
    check_split(variant, options, split)
    builder = prepare(variant, options, data_dir)
    return builder.as_dataset(split=split, shuffle_files=False,
                              read_config=tfds.ReadConfig(try_autocache=False))


def generate(variant: str, options: dict | None, data_dir: str,
             num_workers: int | None = None) -> dict:
    """Builds the cache if needed; returns sizes, seconds (wall and CPU) and bytes on disk."""
    start, cpu_start = time.perf_counter(), time.process_time()
    was_cached = make_builder(variant, options, data_dir).is_prepared()
    builder = prepare(variant, options, data_dir, num_workers=num_workers)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    folder = os.fspath(builder.data_path)
    num_bytes = sum(os.path.getsize(os.path.join(root, f))
                    for root, _, files in os.walk(folder) for f in files)
    return {
        "variant": variant,
        "cache_dir": folder,
        "cached_before": was_cached,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # this process only (not worker processes)
        "workers": resolve_workers(num_workers),
        "bytes": num_bytes,
        "split_sizes": {name: int(s.num_examples) for name, s in builder.info.splits.items()},
    }


def info(variant: str, options: dict | None = None, data_dir: str | None = None) -> dict:
    """What a variant with `options` holds, without generating anything.

    Keys: variant, options (defaults filled in), config_name, version, generator_version,
    split_sizes, label_names, image_shape, image_dtype, feature_keys, features
    (key -> {"shape", "dtype"}); with `data_dir` also cache_dir and cached (bool).
    """
    spec = get_variant(variant)
    opts = validate_options(variant, options)
    _, generator_version = catalogue()
    features = spec.features(opts)
    described = {}
    for key, feature in features.items():
        shape = getattr(feature, "shape", None)
        dtype = feature.np_dtype  # not `.dtype` (deprecated); np.dtype objects are falsy, so no `or`
        try:
            dtype_name = np.dtype(dtype).name
        except TypeError:
            dtype_name = getattr(dtype, "name", None) or str(dtype)
        described[key] = {"shape": tuple(shape) if shape is not None else None,
                          "dtype": dtype_name}
    result = {
        "variant": variant,
        "options": opts.model_dump(mode="json"),
        "config_name": config_name(variant, options),
        "version": BUILDER_VERSION,
        "generator_version": generator_version,
        "split_sizes": {k: int(v) for k, v in spec.split_sizes(opts).items()},
        "label_names": {k: list(v) for k, v in spec.label_names(opts).items()},
        "image_shape": described.get("image", {}).get("shape"),
        "image_dtype": described.get("image", {}).get("dtype"),
        "feature_keys": sorted(features.keys()),
        "features": described,
    }
    if data_dir is not None:
        folder = cache_dir(variant, options, data_dir)
        result["cache_dir"] = folder
        result["cached"] = os.path.isfile(os.path.join(folder, "dataset_info.json"))
    return result
