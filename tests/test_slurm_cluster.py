"""The SLURM profiles, proven on a real single-node SLURM cluster.

    CI=true pytest tests/test_slurm_cluster.py -v        # installs SLURM if needed
    CONVERGENT_INSTALL_SLURM=1 pytest -m slurm           # same, outside CI
    pytest -m "not slurm"                                # skip the cluster tests

Without SLURM (and without permission to install it) the cluster test skips
with the reason; under CI=true it fails instead. Needs root.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import pytest
import yaml

from tests import slurm_cluster as sc
from tests.slurm_cluster import slurm_cluster_info  # noqa: F401  (session fixture)

GPU_KEYS = {"gpu", "gpus", "gpu_model", "gres", "cpus_per_gpu", "slurm_partition"}
GPU_RULES = {"train", "extract", "lmc", "rotation"}  # the rules that run networks on config["device"]
# rule names of the real pipeline (Snakefile + rules/*.smk)
PIPELINE_RULES = {"train", "extract", "moments", "measures", "lmc", "rotation",
                  "runs_table", "measures_table", "lmc_table", "rotation_table", "figures"}
TEST_ONLY_KEYS = {"slurm-status-command", "slurm-no-account", "slurm-init-seconds-before-status-checks", "cores"}


def _profile(name: str) -> dict:
    return yaml.safe_load((sc.PROFILES_DIR / name / "config.yaml").read_text())


# --------------------------------------------------------------------------- #
# static checks (no cluster needed)
# --------------------------------------------------------------------------- #
#: rules whose mem_mb is the per-job estimate of convergent.memory (rules/common.smk)
ESTIMATED_MEMORY = {"train", "extract", "lmc", "rotation"}


def test_slurm_profile_is_for_users_not_for_the_test_cluster():
    prof = _profile("slurm")
    assert prof["executor"] == "slurm"
    assert prof["rerun-incomplete"] is True
    assert prof["latency-wait"] >= 30 and 1 <= prof["jobs"] <= 500
    # the local-cluster workarounds live in the test overlay only
    assert not TEST_ONLY_KEYS & set(prof), TEST_ONLY_KEYS & set(prof)
    assert "slurm_account" not in prof["default-resources"]
    assert PIPELINE_RULES <= set(prof["set-resources"]) and PIPELINE_RULES <= set(prof["set-threads"])
    for rule, res in prof["set-resources"].items():
        assert isinstance(res["runtime"], int), rule
        if rule in ESTIMATED_MEMORY:   # the rule's own per-job estimate; a profile value would override it
            assert "mem_mb" not in res, f"profile overrides the memory estimate of {rule}"
        else:
            assert isinstance(res["mem_mb"], int), rule
        assert not GPU_KEYS & set(res), f"CPU profile asks for a GPU in {rule}"
    # cheap per-pair jobs are grouped, and the group runs its members one by one
    assert prof["groups"]["moments"] == prof["groups"]["measures"]
    group = prof["groups"]["moments"]
    assert prof["group-components"][group] > 1
    for rule in ("moments", "measures"):
        assert prof["set-resources"][rule]["pairslot"] == 1
    assert prof["resources"]["pairslot"] == 1 and prof["set-resource-scopes"]["pairslot"] == "local"


def test_gpu_profile_is_cpu_profile_plus_gpus():
    cpu, gpu = _profile("slurm"), _profile("slurm-gpu")
    stripped = dict(gpu)
    stripped["set-resources"] = {
        rule: {k: v for k, v in res.items() if k not in GPU_KEYS} for rule, res in gpu["set-resources"].items()
    }
    assert stripped == cpu, "profiles/slurm-gpu drifted from profiles/slurm beyond the GPU keys"
    for rule in GPU_RULES:
        assert gpu["set-resources"][rule].get("gpu") == 1, rule
    for rule in set(gpu["set-resources"]) - GPU_RULES:
        assert "gpu" not in gpu["set-resources"][rule], rule


def _pipeline_rules() -> set[str]:
    import re

    files = [sc.REPO_ROOT / "Snakefile", *sorted((sc.REPO_ROOT / "rules").glob("*.smk"))]
    return {m for f in files if f.exists() for m in re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", f.read_text(), re.M)}


def test_profiles_name_only_real_rules():
    """A renamed rule would silently lose its SLURM size/group: keep the profiles in step."""
    rules = _pipeline_rules()
    if not rules:
        pytest.skip("no Snakefile/rules/*.smk in this checkout")
    for name in ("slurm", "slurm-gpu"):
        prof = _profile(name)
        for key in ("set-resources", "set-threads", "groups"):
            stale = set(prof[key]) - rules
            assert not stale, f"profiles/{name} {key} names rules the pipeline does not have: {sorted(stale)}"
    assert PIPELINE_RULES <= rules, sorted(PIPELINE_RULES - rules)
    unsized = rules - set(_profile("slurm")["set-resources"]) - {"all"}
    if unsized:  # not an error: they get default-resources
        warnings.warn(f"rules without their own SLURM size in profiles/slurm: {sorted(unsized)}")


def test_test_profile_overlay(tmp_path):
    info = sc.ClusterInfo(root=tmp_path, hostname="h", cpus=2, mem_mb=4000, gpus=0, partition="debug",
                          slurm_conf=tmp_path / "slurm.conf", log_dir=tmp_path)
    out = yaml.safe_load((sc.make_test_profile(tmp_path / "p", info, sc.PROFILES_DIR / "slurm-gpu")
                          / "config.yaml").read_text())
    assert out["slurm-status-command"] == "squeue" and out["slurm-no-account"] is True
    assert out["cores"] == 2 and out["default-resources"]["slurm_account"] == ""
    assert out["default-resources"]["slurm_partition"] == "debug"
    assert all("gpu" not in res for res in out["set-resources"].values())  # node has no GPUs
    assert all(res.get("mem_mb", 0) <= 2000 for res in out["set-resources"].values())
    assert all(t <= 2 for t in out["set-threads"].values())
    assert out["groups"] == _profile("slurm")["groups"]


def test_missing_slurm_gives_a_reason_instead_of_installing(monkeypatch):
    monkeypatch.setattr(sc, "missing_binaries", lambda: ["slurmctld", "munged"])
    monkeypatch.setattr(sc, "install_packages", lambda: pytest.fail("must not install"))
    monkeypatch.setattr(sc.os, "geteuid", lambda: 0)
    with pytest.raises(sc.SlurmUnavailable, match="CONVERGENT_INSTALL_SLURM=1"):
        sc.ensure_slurm_available(allow_install=False)
    assert sc.install_allowed({"CI": "true"}) and sc.install_allowed({"CONVERGENT_INSTALL_SLURM": "1"})
    assert not sc.install_allowed({"CI": "false"})


# --------------------------------------------------------------------------- #
# the real thing
# --------------------------------------------------------------------------- #
def _load(path: Path):
    return json.loads(path.read_text())


@pytest.mark.slurm
def test_toy_workflow_runs_through_slurm(slurm_cluster_info, tmp_path, record_property):
    info = slurm_cluster_info
    assert (sc.TOY_WORKFLOW_DIR / "Snakefile").is_file(), (
        f"{sc.TOY_WORKFLOW_DIR} is missing: .gitignore's `data/` pattern also matches tests/data/, "
        "so it must be added with `git add -f` (or un-ignored with `!tests/data/`)")
    record_property("slurm_startup_seconds", round(info.startup_seconds, 2))
    print(f"\nSLURM cluster startup: {info.startup_seconds:.1f}s "
          f"({info.cpus} CPUs, {info.mem_mb} MB, {info.gpus} fake GPUs)")
    use_gpu = info.gpus > 0
    base = sc.PROFILES_DIR / ("slurm-gpu" if use_gpu else "slurm")
    workdir = tmp_path / "toy"
    seeds = [0, 1, 2]
    config_args = ["--config", f"gpu={use_gpu}", f"seeds={seeds}"]

    t0 = time.monotonic()
    proc = sc.run_snakemake_on_slurm(workdir, sc.TOY_WORKFLOW_DIR / "Snakefile",
                                     sc.TOY_WORKFLOW_DIR / "config.yaml", config_args,
                                     base_profile=base, timeout=900)
    toy_seconds = time.monotonic() - t0
    record_property("toy_workflow_seconds", round(toy_seconds, 1))
    print(f"toy workflow through SLURM ({base.name} profile): {toy_seconds:.1f}s")
    assert proc.returncode == 0, sc.describe_run(proc, workdir, info)
    assert "submitted with SLURM jobid" in proc.stdout, sc.describe_run(proc, workdir, info)

    res = workdir / "results"
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    for s in seeds:  # directory() outputs, complete, no temporary leftovers
        store = res / "extract" / f"seed{s}.zarr"
        assert store.is_dir() and _load(store / "layer0" / "values.json") == [s] * 4
        assert not Path(str(store) + ".tmp").exists()
    records = _load(res / "summary.json")
    lmc = _load(res / "lmc.json")
    by_rule: dict[str, list[dict]] = {}
    for r in records + [lmc]:
        by_rule.setdefault(r["rule"], []).append(r)
    assert {r: len(v) for r, v in by_rule.items()} == {
        "train": 3, "extract": 3, "moments": 3, "measures": 3, "measures_table": 1, "lmc": 1}

    # every job ran inside a SLURM allocation, in the partition from the profile
    for r in records + [lmc]:
        assert r["SLURM_JOB_ID"], r
        assert r["SLURM_JOB_PARTITION"] == info.partition, r
    train_ids = {r["SLURM_JOB_ID"] for r in by_rule["train"]}
    assert len(train_ids) == len(seeds), "each training run should be its own SLURM job"

    # moments+measures are one group: a pair's two jobs share a SLURM job, and
    # group-components packs several pairs into one SLURM job
    components = _profile(base.name)["group-components"]["pairstats"]
    group_ids = set()
    for m, ms in zip(sorted(by_rule["moments"], key=lambda r: r["pair"]),
                     sorted(by_rule["measures"], key=lambda r: r["pair"])):
        assert m["pair"] == ms["pair"] and m["SLURM_JOB_ID"] == ms["SLURM_JOB_ID"] == ms["moments_job"]
        group_ids.add(m["SLURM_JOB_ID"])
    assert len(group_ids) == math.ceil(len(pairs) / components), group_ids
    assert not group_ids & train_ids

    # GPU requests reached SLURM: the step sees a (fake) GPU
    if use_gpu:
        for r in by_rule["lmc"] + by_rule["train"] + by_rule["extract"]:
            assert r["CUDA_VISIBLE_DEVICES"] not in (None, ""), r
        assert all(r["CUDA_VISIBLE_DEVICES"] is None for r in by_rule["moments"])

    # slurmctld's own view (no sacct here: MinJobAge keeps finished jobs in squeue)
    jobs = sc.completed_jobs(info)
    all_ids = {r["SLURM_JOB_ID"] for r in records + [lmc]}
    assert all_ids <= set(jobs), (all_ids, jobs)
    assert all(jobs[j]["state"] == "COMPLETED" for j in all_ids), jobs
    # the pairslot trick: the group job is sized for members run one at a time:
    # 1 CPU, the largest member's memory, the summed runtime
    used = yaml.safe_load((workdir / ".test-slurm-profile" / "config.yaml").read_text())["set-resources"]
    mem = max(used["moments"]["mem_mb"], used["measures"]["mem_mb"])
    minutes = len(pairs) * (used["moments"]["runtime"] + used["measures"]["runtime"])
    for gid in group_ids:
        assert jobs[gid]["cpus"] == "1", jobs[gid]
        assert f"mem={mem}M" in jobs[gid]["tres"], jobs[gid]
        assert jobs[gid]["time_limit"] == f"{minutes // 60}:{minutes % 60:02d}:00", jobs[gid]
    if use_gpu:
        assert "gpu" in jobs[lmc["SLURM_JOB_ID"]]["gres"], jobs[lmc["SLURM_JOB_ID"]]

    # the plugin's per-job logs (kept by the test overlay)
    logs = sc.slurm_log_files(workdir)
    assert any("group_pairstats" in str(p) for p in logs), logs
    assert any("rule_train" in str(p) for p in logs), logs

    # a second invocation finds everything complete (no incomplete/dangling outputs)
    again = sc.run_snakemake_on_slurm(workdir, sc.TOY_WORKFLOW_DIR / "Snakefile",
                                      sc.TOY_WORKFLOW_DIR / "config.yaml", config_args + ["--dry-run"],
                                      base_profile=base, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, sc.describe_run(again, workdir, info)


@pytest.mark.slurm
def test_fixture_is_shared(slurm_cluster_info):
    """Requesting the fixture again (here or via conftest) reuses the running cluster."""
    assert sc.active_cluster() is slurm_cluster_info
    assert "idle" in sc._node_state(slurm_cluster_info) or "mix" in sc._node_state(slurm_cluster_info)
