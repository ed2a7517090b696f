"""The architecture's import rules hold at run time: data never loads the model, the model never
loads training or evaluation code."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [("mvlt.data", ("mvlt.model", "mvlt.train", "mvlt.eval")), ("mvlt.model", ("mvlt.train", "mvlt.eval"))],
)
def test_import_layering(module: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({forbidden!r})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_top_level_api_is_lazy_but_complete() -> None:
    import mvlt

    assert callable(mvlt.create_model) and "mvlt_tiny" in mvlt.list_models()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mvlt.nope
