"""scripts/release on a clone of this repository: the CHANGELOG, the manifests' image tag
and the alerts' runbook links move to the version, one commit is tagged with it, and
the package built from the tag carries it; what is not releasable is refused, with
nothing changed. And the tree as it stands names one version everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

IMAGE = "ghcr.io/scaleahead/scaleahead"


def named_versions(root: Path) -> dict[str, set[str]]:
    """Each place that names the released version, with the versions it names."""
    deployment = (root / "manifests/base/deployment.yaml").read_text()
    rules = (root / "manifests/monitoring/prometheusrule.yaml").read_text()
    changelog = (root / "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    return {
        "image": set(re.findall(re.escape(IMAGE) + r":(\S+)", deployment)),
        "runbooks": set(re.findall(r"/blob/v([^/]+)/docs/runbooks\.md", rules)),
        "changelog": set(released[:1]),
    }


def test_the_tree_names_one_released_version():
    found = named_versions(REPO)
    assert all(len(v) == 1 for v in found.values()), found
    assert len(set().union(*found.values())) == 1, found


def test_every_alert_links_its_runbook_section():
    headings = {
        line[3:].strip().lower()
        for line in (REPO / "docs/runbooks.md").read_text().splitlines()
        if line.startswith("## ")
    }
    doc = yaml.safe_load((REPO / "manifests/monitoring/prometheusrule.yaml").read_text())
    alerts = [r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        page, anchor = url.split("#")
        assert page.endswith("/docs/runbooks.md"), url
        assert anchor == rule["alert"].lower() and anchor in headings, url


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    for key, value in (("user.name", "release test"), ("user.email", "test@localhost")):
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True)
    return root


def run_release(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts/release"), *args, "--no-image"],
        capture_output=True,
        text=True,
    )


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_release_moves_every_version_and_tags_one_commit(clone: Path, tmp_path: Path):
    old = next(iter(named_versions(clone)["image"]))
    major, minor, _ = (int(x) for x in old.split("."))
    new = f"{major}.{minor + 1}.0"
    # A change noted under Unreleased, as every user-visible change is.
    path = clone / "CHANGELOG.md"
    note = "### Added\n- A change the release test made.\n"
    path.write_text(path.read_text().replace("## [Unreleased]\n", f"## [Unreleased]\n\n{note}", 1))
    git(clone, "commit", "--quiet", "-am", "A change")
    head = git(clone, "rev-parse", "HEAD")
    done = run_release(clone, new)
    assert done.returncode == 0, done.stderr
    assert named_versions(clone) == {"image": {new}, "runbooks": {new}, "changelog": {new}}
    changelog = (clone / "CHANGELOG.md").read_text()
    assert re.search(
        rf"## \[Unreleased\]\n\n## \[{re.escape(new)}\] - \d{{4}}-\d\d-\d\d\n", changelog
    )
    assert f"## [{new}] - " in changelog.split(note)[0]  # the notes kept, under the version
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "rev-parse", "HEAD^") == head  # one commit
    assert git(clone, "describe", "--tags", "--exact-match") == f"v{new}"
    # The package built from the tagged tree is that version (setuptools-scm reads the tag).
    wheel = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "w"),
            str(clone),
        ],
        capture_output=True,
        text=True,
    )
    assert wheel.returncode == 0, wheel.stderr
    assert [p.name for p in (tmp_path / "w").iterdir()] == [f"scaleahead-{new}-py3-none-any.whl"]
    # Nothing to release a second time.
    again = run_release(clone, f"{major}.{minor + 2}.0")
    assert again.returncode == 2 and "Unreleased section is empty" in again.stderr


@pytest.mark.parametrize(
    ("setup", "version", "says"),
    [
        (None, "1.2", "is not a version X.Y.Z"),
        (None, "0.0.1", "is not after the current version"),
        ("dirty", "9.0.0", "uncommitted changes"),
    ],
)
def test_release_refuses_and_changes_nothing(
    clone: Path, setup: str | None, version: str, says: str
):
    if setup == "dirty":
        (clone / "README.md").write_text("edited\n")
    before = git(clone, "rev-parse", "HEAD"), git(clone, "tag", "--list")
    done = run_release(clone, version)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert (git(clone, "rev-parse", "HEAD"), git(clone, "tag", "--list")) == before
    assert git(clone, "diff", "--stat", "--", "CHANGELOG.md", "manifests") == ""
