"""Train, evaluate and export a garden experiment: `python run.py --config configs/quickstart.yaml`.

All logic lives in garden/cli.py; `python run.py --help` lists the options.
"""

import sys

from garden.cli import main

if __name__ == "__main__":
    sys.exit(main())
