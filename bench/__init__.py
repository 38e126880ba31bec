"""funcnet's benchmark suite: the same workloads in funcnet, hand-written JAX and other frameworks.

Run ``python -m bench`` (``--quick`` for a smoke run); see ``bench/README.md``
for the workloads, the timing rules, which reference each ratio uses, and
the latest measured table.

Layout: ``spec.py`` (the framework-neutral model and training description),
``data.py`` (deterministic synthetic data), ``runner.py`` (timing and the
training loops), ``frameworks/`` (one module per framework, one interface),
``workloads/`` (one module per workload), ``report.py`` (ratios, JSON,
Markdown), ``cli.py`` (the command line).
"""
