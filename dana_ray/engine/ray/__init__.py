"""The Ray executor: everything of the engine that imports Ray (actors, the parameter server, its shards,
live metrics). Imported only when a trial runs on Ray; this package's ``__init__`` imports nothing."""
