"""Generation time and cache size of every toyworld variant at its default options.

    python benchmarks/toyworld_generation.py [--variants objects,attributes,scenes,video] [--style clean]

Each variant is generated from scratch into a fresh temporary data folder (one process, as
`python -m garden.data.toyworld generate` does) and the cache's bytes on disk are counted.
Writes benchmarks/results/toyworld_generation.json and its section of docs/results/data.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import machine, markdown_table, update_markdown_section, write_result  # noqa: E402

DATA_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results", "data.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="objects,attributes,scenes,video")
    parser.add_argument("--style", default="clean", choices=("clean", "photo"))
    args = parser.parse_args(argv)
    from garden.data.toyworld import builder

    rows = []
    for variant in args.variants.split(","):
        data_dir = tempfile.mkdtemp(prefix="toyworld-generation-")
        try:
            result = builder.generate(variant, {"style": args.style}, data_dir, num_workers=1)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        examples = sum(result["split_sizes"].values())
        rows.append({"variant": variant, "style": args.style, "examples": examples,
                     "wall_seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"],
                     "examples_per_cpu_second": examples / result["cpu_seconds"],
                     "cache_mib": result["bytes"] / 2**20})
    command = "python benchmarks/toyworld_generation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"command": command.strip(), "machine": machine(), "load_average": os.getloadavg(), "rows": rows}
    write_result("toyworld_generation", payload)
    table = markdown_table(rows, ["variant", "style", "examples", "wall_seconds", "cpu_seconds",
                                  "examples_per_cpu_second", "cache_mib"])
    body = (f"### Toyworld generation and cache size\n\n`{payload['command']}`: default options, one process, "
            f"from an empty data folder; {machine()['cpu_count']} CPU cores, load average "
            f"{payload['load_average'][0]:.1f} at the end. Video examples are clips of 6 frames.\n\n" + table)
    update_markdown_section(DATA_MD, "toyworld_generation", body)
    print(table)


if __name__ == "__main__":
    main()
