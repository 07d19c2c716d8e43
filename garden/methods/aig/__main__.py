"""`python -m garden.methods.aig rates ...`: see garden/methods/aig/analysis.py."""

from garden.methods.aig.analysis import main

raise SystemExit(main())
