"""Recording: row schema, atomic per-case parts, compaction, run manifest, resume, status.

Modules: schema (ROW_SCHEMA), keys (hashes, paths), parts (atomic part files), compact
(results.parquet), manifest (run.json), runs (run planning, `latest`), status (done/missing),
resolve/options/identity/cases/recorder (the pytest plugin's logic). No import here is heavy.
"""
