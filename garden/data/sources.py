"""The source layer: one entry point for every data source.

`load_source(config, split)` returns a `tf.data.Dataset` of unbatched example dicts whose keys
are those of `docs/design/contracts.md`; `source_info(config)` describes the source without
reading its examples. `config.name` picks the source:

- `toyworld:<variant>`: the procedural renderer (`garden.data.toyworld.builder`);
- `fashion_mnist`: IDX files (Debian package, a folder) or TFDS (`garden.data.fashion_mnist`);
- `tfds:<name>[/<config>]`: any TensorFlow Datasets dataset (`garden.data.tfds_source`);
- `folder`: images plus a labels.csv / labels.json (`garden.data.folder`).

Split strings use the TFDS syntax for every source (`train`, `train[:90%]`, `train[90%:]`,
`train[10:20]`, `train+test`, `all`); `select_split` resolves them against plain split sizes for
the sources that are not TFDS datasets.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import BaseModel, ValidationError

from garden.data.config import DataConfig, resolve_data_dir
from garden.data.errors import DataError
from garden.errors import did_you_mean, unknown_choice

if TYPE_CHECKING:  # TensorFlow is imported by the sources themselves: names and splits check without it
    import tensorflow as tf

SOURCE_FORMS = ("toyworld:<variant>", "fashion_mnist", "tfds:<name>[/<config>]", "folder")
SPLIT_SYNTAX = "train, train[:90%], train[90%:], train[10:20], train+test, all"


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a source provides, known without reading its examples.

    `num_classes` and `class_names` describe the primary `label` key (None when the source has
    none); `label_names` holds the class names of every categorical key; `split_sizes` the size
    of each base split when known (empty otherwise); `feature_keys` every key of an example.
    `image_shape` may hold None for sizes that vary between examples.
    """

    name: str
    image_shape: tuple[int | None, ...] | None
    feature_keys: tuple[str, ...]
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    label_names: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def label_keys(self) -> tuple[str, ...]:
        """Every key but `image`: the candidates for `data.label_keys`."""
        return tuple(k for k in self.feature_keys if k != "image")

    def split_size(self, split: str) -> int | None:
        """Number of examples a split string selects; None when the split sizes are unknown."""
        if not self.split_sizes:
            return None
        return sum(stop - start for _, start, stop in select_split(split, self.split_sizes, self.name))


# ----------------------------------------------------------------------------------------------
# Split strings


def one_line(text: Any) -> str:
    """A message squeezed onto one line (TFDS and OS errors span several)."""
    return " ".join(str(text).split())


def _parse_split(spec: str, source: str):
    if not isinstance(spec, str) or not spec:
        raise DataError(f"bad split {spec!r} for {source}: expected a split string like {SPLIT_SYNTAX}")
    try:
        import tensorflow_datasets as tfds

        return tfds.core.ReadInstruction.from_spec(spec)
    except (ValueError, AssertionError):
        raise DataError(f"bad split {spec!r} for {source}: not a split string; valid forms: {SPLIT_SYNTAX}") from None


def check_split_syntax(spec: str, source: str) -> None:
    """Raise DataError when `spec` is not a TFDS split string (split names are not checked)."""
    _parse_split(spec, source)


def select_split(spec: str, split_sizes: Mapping[str, int], source: str, hint: str = "") -> list[tuple[str, int, int]]:
    """Resolve a split string to `[(split name, start, stop), ...]` against `split_sizes`.

    Raises DataError (one line, naming the string and the valid split names) on bad syntax, an
    unknown split name, an out-of-range slice, or a selection with no examples. `hint` is
    appended to unknown-split messages (e.g. how to make a validation split).
    """
    ri = _parse_split(spec, source)
    names = [re.match(r"[\w-]+", sub).group(0) for sub in re.split(r"\s*\+\s*", spec)]
    for name in names:
        if name != "all" and name not in split_sizes:
            msg = f"bad split {spec!r} for {source}: " + unknown_choice("split name", name, split_sizes)
            raise DataError(msg + (f"; {hint}" if hint else ""))
    infos = {k: types.SimpleNamespace(num_examples=int(n), shard_lengths=[int(n)]) for k, n in split_sizes.items()}
    try:
        absolute = ri.to_absolute(infos)
    except (ValueError, AssertionError, KeyError) as e:
        sizes = ", ".join(f"{k}={n}" for k, n in split_sizes.items())
        raise DataError(f"bad split {spec!r} for {source}: {one_line(e)} (split sizes: {sizes})") from None
    out = []
    for instr in absolute:
        n = int(split_sizes[instr.splitname])
        start = 0 if instr.from_ is None else int(instr.from_)
        stop = n if instr.to is None else int(instr.to)
        out.append((instr.splitname, start, max(start, stop)))
    if sum(stop - start for _, start, stop in out) == 0:
        sizes = ", ".join(f"{k}={n}" for k, n in split_sizes.items())
        raise DataError(f"split {spec!r} for {source} selects no examples (split sizes: {sizes})")
    return out


# ----------------------------------------------------------------------------------------------
# Options


def validate_options(model: type[BaseModel], options: Mapping[str, Any] | None, source: str) -> BaseModel:
    """Validate a source's `data.options` with its pydantic model; one-line DataError on failure."""
    options = dict(options or {})
    valid = list(model.model_fields)
    for key in options:
        if key not in model.model_fields:
            raise DataError(
                f"unknown option data.options.{key} for {source}{did_you_mean(key, valid)}; "
                f"valid: {', '.join(valid) if valid else '(none)'}")
    try:
        return model.model_validate(options)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DataError(
            f"bad option data.options.{where} for {source}: {one_line(err['msg'])} "
            f"(got {err.get('input')!r})") from None


# ----------------------------------------------------------------------------------------------
# Dispatch


def parse_source_name(name: str) -> tuple[str, str]:
    """('toyworld', variant) | ('fashion_mnist', '') | ('tfds', 'name[/config]') | ('folder', '')."""
    if not isinstance(name, str):
        raise DataError(f"bad data.name {name!r}; valid forms: {', '.join(SOURCE_FORMS)}")
    kind, sep, rest = name.partition(":")
    if kind in ("toyworld", "tfds") and sep:
        if not rest:
            raise DataError(f"data.name {name!r} needs a name after the colon; valid forms: {', '.join(SOURCE_FORMS)}")
        return kind, rest
    if name in ("fashion_mnist", "folder"):
        return name, ""
    # Suggest the intended form: a misspelt prefix or name, a missing variant, a bare TFDS name.
    suggestion = ""
    if kind in ("toyworld", "tfds"):
        suggestion = f" (did you mean '{kind}:{'<variant>' if kind == 'toyworld' else '<name>'}'?)"
    elif sep:
        close = difflib.get_close_matches(kind, ["toyworld", "tfds"], n=1)
        suggestion = f" (did you mean '{close[0]}:{rest}'?)" if close else ""
    else:
        suggestion = did_you_mean(name, ["fashion_mnist", "folder", "toyworld", "tfds"])
        if not suggestion and _is_tfds_name(name):
            suggestion = f" (did you mean 'tfds:{name}'?)"
    raise DataError(f"unknown data source {name!r}{suggestion}; valid forms: {', '.join(SOURCE_FORMS)}")


def _is_tfds_name(name: str) -> bool:
    try:
        import tensorflow_datasets as tfds

        return name.split("/")[0] in tfds.list_builders(with_community_datasets=False)
    except Exception:  # noqa: BLE001 - only used for a suggestion
        return False


def _registered_source(name: str):
    """A source a method registered with `@register_dataset(name)`: an object (or class) with
    `load(config, split) -> tf.data.Dataset` and `info(config) -> SourceInfo`; None otherwise."""
    from garden.registry import DATASETS

    return DATASETS.get(name) if name in DATASETS else None


def load_source(config: DataConfig, split: str) -> tf.data.Dataset:
    """The examples of `split` (a split string) as a dataset of unbatched dicts."""
    registered = _registered_source(config.name)
    if registered is not None:
        return registered.load(config, split)
    kind, rest = parse_source_name(config.name)
    if kind == "toyworld":
        # The builder validates the variant, its options and the split string (one-line DataErrors).
        from garden.data.toyworld import builder

        return builder.load_split(rest, dict(config.options), split, resolve_data_dir(config))
    if kind == "fashion_mnist":
        from garden.data import fashion_mnist

        return fashion_mnist.load(config, split)
    if kind == "tfds":
        from garden.data import tfds_source

        return tfds_source.load(config, split)
    from garden.data import folder

    return folder.load(config, split)


def source_info(config: DataConfig) -> SourceInfo:
    """Describe the source of `config` (class names, image shape, split sizes, keys)."""
    registered = _registered_source(config.name)
    if registered is not None:
        return registered.info(config)
    kind, rest = parse_source_name(config.name)
    if kind == "toyworld":
        from garden.data.toyworld import builder

        return _toyworld_info(config.name, builder.info(rest, dict(config.options), data_dir=resolve_data_dir(config)))
    if kind == "fashion_mnist":
        from garden.data import fashion_mnist

        return fashion_mnist.info(config)
    if kind == "tfds":
        from garden.data import tfds_source

        return tfds_source.info(config)
    from garden.data import folder

    return folder.info(config)


# The toyworld builder's info dict: read tolerantly, the builder is written alongside this module.
def _first(d: Mapping[str, Any], *keys: str, default=None):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def _toyworld_split_sizes(d: Mapping[str, Any]) -> dict[str, int]:
    sizes = _first(d, "split_sizes", "splits", default={})
    return {str(k): int(v) for k, v in dict(sizes).items()}


def _toyworld_info(name: str, d: Mapping[str, Any]) -> SourceInfo:
    label_names = {str(k): tuple(str(n) for n in v) for k, v in dict(_first(d, "label_names", default={})).items()}
    keys = _first(d, "feature_keys", "features", "keys", default=None)
    keys = tuple(keys) if keys is not None else tuple(["image", *label_names])
    shape = _first(d, "image_shape", "shape", default=None)
    class_names = label_names.get("label")
    num_classes = _first(d, "num_classes", default=None)
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    return SourceInfo(
        name=name,
        image_shape=tuple(shape) if shape is not None else None,
        feature_keys=keys,
        num_classes=num_classes,
        class_names=class_names,
        label_names=label_names,
        split_sizes=_toyworld_split_sizes(d),
    )
