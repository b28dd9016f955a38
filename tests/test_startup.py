"""Start-up cost: what a job's process imports (each Snakemake job is a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from convergent.lazy import LazyModule

HEAVY = ("torch", "pandas", "sklearn", "scipy", "matplotlib")


def _imported(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which of :data:`HEAVY` it left in sys.modules."""
    code = textwrap.dedent(code) + (f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules "
                                    f"for m in {HEAVY!r}}}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_importing_the_jobs_imports_no_heavy_library():
    assert _imported("import convergent.jobs, convergent.io, convergent.logs") == dict.fromkeys(HEAVY, False)


def test_train_and_extract_jobs_import_torch_only(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-c", f"from convergent.data import load_dataset; "
                                          f"load_dataset('digits', data_dir={str(data)!r})"], check=True)
    imported = _imported(f"""
        from convergent.jobs import extract_job, train_job
        run = {{"dataset": "digits", "arch": "mlp", "width": 4, "frozen_k": 0, "seed": 0}}
        settings = {{"model": {{"depth": 2}}, "training": {{"epochs": 1}}, "extract": {{}}, "layers": ["fc1", "fc2"]}}
        out = {str(tmp_path)!r}
        train_job(run=run, settings=settings, reference=None, data_dir={str(data)!r}, download=False,
                  device="cpu", threads=1, out_model=out + "/model.pt", out_init=out + "/init.pt",
                  out_log_csv=out + "/log.csv", out_metrics=out + "/metrics.json")
        extract_job(run=run, checkpoints={{"trained": out + "/model.pt"}}, settings=settings,
                    data_dir={str(data)!r}, device="cpu", threads=1, out_stores={{"trained": out + "/a.zarr"}})
    """)
    assert (tmp_path / "a.zarr").is_dir()
    assert imported == {**dict.fromkeys(HEAVY, False), "torch": True}


def test_lazy_module_imports_on_first_attribute():
    code = """
        import sys
        from convergent.lazy import LazyModule
        m = LazyModule("colorsys")
        assert "colorsys" not in sys.modules, "imported too early"
        assert m.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0) and "colorsys" in sys.modules
        print("{}")
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{}"
    assert "json" in repr(LazyModule("json"))
