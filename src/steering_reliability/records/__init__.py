"""Recording: the row schema, parts and results (store), run identity and provenance (run),
the pytest side (plugin), live progress and status. No import here is heavy: the plugin's
options read these constants in every pytest session."""

RESUME_MODES = ("auto", "never", "must")
# Where the experiments live, relative to the rootdir (ini option `sr_code_paths` overrides).
DEFAULT_CODE_PATHS = ("experiments", "conftest.py")
