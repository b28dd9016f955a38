"""Start-up cost: what a job's process imports (each Snakemake job is a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
    subprocess.run([sys.executable, "-c", f"from convergent.nets.data import load_dataset; "
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


def _job_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Run a job-like script (logging set up, then ``body``) in a fresh interpreter."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from convergent.logs import finish_job, lap, setup_job_logging
        setup_job_logging({str(tmp_path / "job.log")!r})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_finish_job_exits_0_with_outputs_and_phases_written(tmp_path):
    from convergent.logs import parse_phases

    proc = _job_script(tmp_path, f"""
        import torch   # the teardown finish_job skips is torch's
        Path({str(tmp_path / "out.txt")!r}).write_text("done")
        lap("compute")
        finish_job()
        raise SystemExit("not reached")
    """)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.txt").read_text() == "done"
    phases = parse_phases((tmp_path / "job.log").read_text())
    assert set(phases) >= {"startup", "compute", "other"} and phases["startup"] > 0


def test_a_failing_job_keeps_its_exit_status_traceback_and_phases(tmp_path):
    from convergent.logs import parse_phases

    proc = _job_script(tmp_path, """
        lap("compute")
        raise FloatingPointError("diverged")
        finish_job()
    """)
    assert proc.returncode == 1
    log = (tmp_path / "job.log").read_text()
    assert "job failed" in log and "FloatingPointError: diverged" in log
    assert "compute" in parse_phases(log)
