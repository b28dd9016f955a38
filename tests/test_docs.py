"""The science is documented inside the project: every measure the code can emit and every finding
it evaluates has an entry in docs/, and nothing cites a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from convergent.findings import FINDINGS
from convergent.measures import DEFAULT_PARAMS, compute_measures
from convergent.moments import moments_from_arrays

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: not part of the project's own text: version control, the virtual environment, pipeline outputs, caches
SKIP_DIRS = {".git", ".venv", "results", "__pycache__", ".pytest_cache", ".snakemake"}
#: the old citation target outside the repository (split so this file does not match itself)
OUTSIDE_CITATION = "shared/" + "SPEC"

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def documented_names(docs: Path = DOCS) -> set[str]:
    """Every code span and every heading (backticks stripped) of the Markdown files under ``docs``."""
    names: set[str] = set()
    for page in sorted(docs.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        names |= {span.strip() for span in _CODE_SPAN.findall(text)}
        names |= {heading.replace("`", "").strip() for heading in _HEADING.findall(text)}
    return names


def _pair(rng: np.random.Generator, n: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small pair of ReLU layers that share a subspace (so the maximum match is not empty, and
    the minimal-match rows exist), with private units on each side and 3 classes."""
    shared = rng.standard_normal((n, 4))
    X = np.maximum(np.hstack([shared, rng.standard_normal((n, 3))]), 0.0)
    mix = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    Y = np.maximum(np.hstack([shared @ mix, rng.standard_normal((n, 2))]), 0.0)
    labels = rng.integers(0, 3, n)
    return X, Y, labels


def emitted_measures(form: str) -> tuple[set[str], list[str]]:
    """(measure names, notes of unavailable rows) of :func:`compute_measures` with every family
    enabled on one pair in ``form`` (``"primal"`` or ``"dual"``), with the kernel subsample,
    minibatch CKA and the replicates turned on."""
    X, Y, labels = _pair(np.random.default_rng(7))
    m = moments_from_arrays(X, Y, labels=labels, n_classes=3, subsample_size=60, minibatch_size=40,
                            form=form, null_permutations=2, example_blocks=4)
    families = list(DEFAULT_PARAMS["views"])
    df = compute_measures(m, {"enabled": families, "null_families": families, "se_families": families,
                              # parameters small enough for this pair that every measure is defined
                              "minimal_eps": [0.5], "spectral_k": [2, 4], "alignment_fraction": 0.1})
    unavailable = df.loc[df["note"].str.startswith("unavailable"), ["measure", "note"]]
    return set(df["measure"]), [f"{r.measure}: {r.note}" for r in unavailable.itertuples()]


@pytest.fixture(scope="module")
def measure_names() -> set[str]:
    primal, primal_missing = emitted_measures("primal")
    dual, _ = emitted_measures("dual")
    # every primal measure must have been computed, or a name emitted only on success could be missed
    assert primal_missing == [], primal_missing
    return primal | dual


def test_documented_names_reads_code_spans_and_headings(tmp_path):
    (tmp_path / "a.md").write_text("# Title `x_one`\n\nText `y_two` and `z three`.\n## plain_head\nno_span here\n")
    assert documented_names(tmp_path) == {"Title x_one", "x_one", "y_two", "z three", "plain_head"}


def test_both_forms_contribute_their_own_measures():
    """The collection sees both forms: each emits names the other does not (the dual form's
    all-rows kernels; the primal form's fitted and held-out unit measures)."""
    primal, _ = emitted_measures("primal")
    dual, _ = emitted_measures("dual")
    assert dual - primal and primal - dual


def test_every_emitted_measure_is_documented(measure_names):
    missing = sorted(measure_names - documented_names())
    assert missing == [], f"measures emitted by compute_measures but not documented in docs/: {missing}"


def test_every_finding_is_documented():
    ids = {f.id for f in FINDINGS}
    assert len(ids) == len(FINDINGS) > 0
    missing = sorted(ids - documented_names())
    assert missing == [], f"findings not documented in docs/: {missing}"


def test_docs_index_links_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    assert pages, "docs/ holds no pages"
    assert [p for p in pages if f"({p})" not in index] == []


def _project_files(root: Path = ROOT):
    """The project's files: git's tracked and untracked-but-not-ignored ones in a checkout (build
    output such as an egg-info copy of an older README is not the project's text), else every file
    outside :data:`SKIP_DIRS`."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
        yield from (root / name for name in out.split("\0") if name and (root / name).is_file())
        return
    except (OSError, subprocess.CalledProcessError):
        pass
    for path in root.rglob("*"):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(root).parts):
            yield path


def test_nothing_cites_a_file_outside_the_repository():
    hits = [str(p.relative_to(ROOT)) for p in _project_files() if OUTSIDE_CITATION.encode() in p.read_bytes()]
    assert hits == [], f"files citing {OUTSIDE_CITATION} (outside the repository; cite docs/ instead): {hits}"
