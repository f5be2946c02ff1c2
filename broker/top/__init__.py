"""``broker top``: a live view of a cluster's nodes, from their ``/metrics``.

:mod:`~broker.top.scrape` reads nodes over HTTP, :mod:`~broker.top.view`
turns two readings into rates (no I/O), :mod:`~broker.top.screen` lays a
view out as text lines (no I/O), and :mod:`~broker.top.terminal` owns the
terminal while the view runs.
"""

__all__: list[str] = []
