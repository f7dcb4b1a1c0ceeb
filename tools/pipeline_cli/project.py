"""Where the project's files are: the repository root, as the tools and tests see it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
LAYER_PATH = PROJECT_ROOT / "layers" / "common" / "python"
