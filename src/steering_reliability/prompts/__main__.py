"""Entry point of `python -m steering_reliability.prompts`."""

from __future__ import annotations

from steering_reliability.prompts.cli import main

raise SystemExit(main())
