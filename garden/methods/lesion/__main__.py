"""python -m garden.methods.lesion --workdir RUN  (see garden/methods/lesion/command.py)."""

import sys

from garden.methods.lesion.command import main

if __name__ == "__main__":
    sys.exit(main())
