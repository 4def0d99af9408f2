"""Where the EDM reference data (``shared/edm-compat``) lives, for the tests that need it.

Looked up in ``$EXPLORER_EDM_COMPAT``, then ``shared/`` inside and beside the checkout (CI
clones the project with ``shared/`` beside it), then the development machine's path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

_ROOT = Path(__file__).resolve().parents[1]


def find_compat_dir() -> Optional[Path]:
    env = os.environ.get("EXPLORER_EDM_COMPAT")
    candidates = [Path(env)] if env else []
    candidates += [_ROOT / "shared" / "edm-compat", _ROOT.parent / "shared" / "edm-compat", Path("/work/shared/edm-compat")]
    for path in candidates:
        if (path / "state_dicts.json").is_file() and (path / "fixtures" / "manifest.json").is_file():
            return path
    return None


def compat_dir_or_skip() -> Path:
    """The data folder, or skip the calling test module when it is absent."""
    import pytest

    path = find_compat_dir()
    if path is None:
        pytest.skip("shared/edm-compat (EDM reference data) is not available", allow_module_level=True)
    return path
