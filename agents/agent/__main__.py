"""``python -m agents.agent``."""

from agents.agent.cli import main

raise SystemExit(main())
