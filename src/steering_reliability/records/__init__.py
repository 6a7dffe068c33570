"""Recording: the row schema, parts and results (store), run identity and provenance (run),
the pytest side (plugin), live progress and status. No import here is heavy."""
