"""Reports from run records: the paper's tables with our numbers beside its numbers, and the figures the docs show.

Torch-free: it reads JSON records (``results/**/*.json``, run folders' ``metrics.json``, W&B offline runs) and
writes Markdown, LaTeX and PNG. Modules: :mod:`.records` (loading, schema check), :mod:`.protocol` (the config keys
and values of each table's cells), :mod:`.cells` (grouping into cells, mean ± sd), one module per experiment
(:mod:`.nri`, :mod:`.l2x`, :mod:`.vae`), :mod:`.tables` (every table and the goals), :mod:`.render` (Markdown,
LaTeX, the docs' table markers) and :mod:`.figures`. The command-line entry points are ``scripts/make_tables.py``
and ``scripts/plot_*.py``.
"""
