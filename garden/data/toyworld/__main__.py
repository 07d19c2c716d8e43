"""`python -m garden.data.toyworld {list,info,preview,generate}`.

    python -m garden.data.toyworld list [--markdown]
    python -m garden.data.toyworld info --variant scenes --set image_size=64
    python -m garden.data.toyworld preview --variant scenes --out preview.png [--n 8] [--split train] [--set key=value ...]
    python -m garden.data.toyworld generate --variant objects [--set key=value ...] [--data-dir DIR] [--workers N]

Bad input prints one line (`error: ...`) on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing

from garden.errors import GardenError

COMMANDS = ("list", "info", "preview", "generate")


class _UsageError(Exception):
    """An argparse error, reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise _UsageError(message)


def parse_sets(items: list[str] | None) -> dict:
    """`["key=value", ...]` -> options; values are YAML scalars/lists (32, photo, [32, 32], null)."""
    import yaml

    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _UsageError(f"bad --set {item!r}: expected key=value, e.g. --set image_size=32")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key] = value
    return options


def _type_name(annotation) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "{" + ", ".join(str(a) for a in args) + "}"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if args:
        inner = ", ".join(_type_name(a) for a in args)
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        if name in ("Union", "UnionType"):
            return " | ".join(_type_name(a) for a in args)
        return f"{name}[{inner}]"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _markdown(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else repr(value)
    text = text.replace("[", "(").replace("]", ")") if isinstance(value, (list, tuple)) else text
    return text.replace("|", "\\|")


def list_markdown() -> str:
    """The options of every variant as markdown tables (for docs/data.md)."""
    from garden.data.toyworld import builder

    variants, _ = builder.catalogue()
    out = []
    for name, spec in variants.items():
        out.append(f"#### `{name}` options\n")
        out.append("| option | type | default | meaning |")
        out.append("|---|---|---|---|")
        for key, field in spec.Options.model_fields.items():
            default = field.get_default(call_default_factory=True)
            description = (field.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | {_type_name(field.annotation).replace('|', chr(92) + '|')} | "
                       f"`{_markdown(default)}` | {description} |")
        out.append("")
    return "\n".join(out)


def cmd_list(args) -> int:
    from garden.data.toyworld import builder

    if args.markdown:
        print(list_markdown())
        return 0
    variants, generator_version = builder.catalogue()
    print(f"toyworld variants (generator {generator_version}, builder version "
          f"{builder.BUILDER_VERSION}); set options with --set key=value")
    for name, spec in variants.items():
        description = getattr(spec, "description", "") or ""
        print(f"\n{name}: {description}".rstrip())
        print(f"  tfds name: toyworld_{name}")
        for key, field in spec.Options.model_fields.items():
            default = field.get_default(call_default_factory=True)
            help_text = f"  # {field.description}" if field.description else ""
            print(f"  {key}: {_type_name(field.annotation)} = {default!r}{help_text}")
    return 0


def cmd_info(args) -> int:
    from garden.data.config import default_data_dir
    from garden.data.toyworld import builder

    out = builder.info(args.variant, parse_sets(args.set), args.data_dir or default_data_dir())
    print(json.dumps(out, indent=2, default=list))
    return 0


def cmd_preview(args) -> int:
    from garden.data.toyworld import preview

    if args.n is not None and args.n < 1:
        raise _UsageError(f"argument --n: must be >= 1, got {args.n}")
    path = preview.preview(args.variant, parse_sets(args.set), out=args.out, n=args.n,
                           split=args.split)
    print(f"wrote {path}")
    return 0


def cmd_generate(args) -> int:
    from garden.data.config import default_data_dir
    from garden.data.toyworld import builder

    data_dir = args.data_dir or default_data_dir()
    result = builder.generate(args.variant, parse_sets(args.set), data_dir,
                              num_workers=args.workers)
    sizes = ", ".join(f"{k} {v}" for k, v in result["split_sizes"].items())
    state = "already cached" if result["cached_before"] else "generated"
    workers = f", {result['workers']} workers" if result["workers"] > 1 else ""
    print(f"toyworld:{args.variant} {state} in {result['seconds']:.1f} s (CPU "
          f"{result['cpu_seconds']:.1f} s{workers}): {sizes}; "
          f"{result['bytes'] / 2**20:.1f} MiB in {result['cache_dir']}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m garden.data.toyworld",
                     description="toyworld: list variants, preview samples, pre-build the cache")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}",
                                parser_class=_Parser)
    p = sub.add_parser("list", help="the variants and their options with defaults")
    p.add_argument("--markdown", action="store_true", help="markdown tables (for docs/data.md)")

    def variant_args(p):
        p.add_argument("--variant", required=True, help="objects | attributes | scenes | video")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a variant option (repeatable), e.g. --set image_size=32")

    p = sub.add_parser("info", help="split sizes, labels and features of a variant (no generation)")
    variant_args(p)
    p.add_argument("--data-dir", help="cache root (default $GARDEN_DATA_DIR or ~/.cache/garden)")
    p = sub.add_parser("preview", help="render a grid of samples into a PNG (no cache needed)")
    variant_args(p)
    p.add_argument("--out", default="preview.png", help="the PNG to write")
    p.add_argument("--n", type=int, default=None, help="number of samples (default 8; 3 clips for video)")
    p.add_argument("--split", default="train", help="train | validation | test")
    p = sub.add_parser("generate", help="build the TFDS cache of a variant; prints sizes and time")
    variant_args(p)
    p.add_argument("--data-dir", help="cache root (default $GARDEN_DATA_DIR or ~/.cache/garden)")
    p.add_argument("--workers", default=None,
                   help="processes rendering examples: N, or 0/auto for one per core "
                        "(default $GARDEN_TOYWORLD_WORKERS, else 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise _UsageError(f"missing command; valid: {', '.join(COMMANDS)}")
        handler = {"list": cmd_list, "info": cmd_info, "preview": cmd_preview,
                   "generate": cmd_generate}[args.command]
        return handler(args)
    except (_UsageError, GardenError) as err:
        message = " ".join(str(err).split())  # one line, whatever the source
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
