"""The one training loop's parts, with no Ray: a model over flat buffers (``flat``), the master's state
(``master``), a model replica (``replica``), how a trial's parts are built (``build``), the epoch loop and the
executor interface (``loop``), the local executor (``local``), the dispatch of jobs to replicas (``dispatch``),
a server cut into shards (``shards``), live figures (``telemetry``) and torch's thread count (``threads``).

The Ray executor is ``engine.ray``, imported only when a trial runs on Ray. This package's ``__init__``
imports nothing, so importing one of its modules imports no other.
"""
