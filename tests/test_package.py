import subprocess
import sys


def test_import_is_lazy():
    """`import spatial_refine` must not pull torch, squidpy or scanpy: they load on first use."""
    code = (
        "import sys, spatial_refine as sr; "
        "heavy = [m for m in ('torch', 'squidpy', 'scanpy', 'torch_geometric') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute_raises():
    import pytest

    import spatial_refine as sr

    with pytest.raises(AttributeError, match="no attribute"):
        sr.does_not_exist  # noqa: B018
