"""The import-linter contracts in pyproject.toml hold: the domain never imports Dagster or FastAPI, contexts one way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency; install with .[dev]"
    result = subprocess.run([lint], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent)

    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
