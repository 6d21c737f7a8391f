"""The docs stay true to the code: the CLI reference is generated from the CLI, and README links resolve."""

import re
import subprocess
import sys

from conftest import REPO

REGENERATE = "python -m mothermodel.clidoc > docs/cli-reference.md"


def test_cli_reference_is_current():
    from mothermodel.clidoc import render

    committed = (REPO / "docs" / "cli-reference.md").read_text()
    assert committed == render(), f"docs/cli-reference.md is out of date with the CLI: regenerate it with `{REGENERATE}`"


def test_clidoc_check_and_no_torch(tmp_path):
    """`--check` says when a file is stale; rendering imports neither torch nor transformers."""
    code = ("import sys; from mothermodel import clidoc; clidoc.render(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr[-2000:]
    stale = tmp_path / "ref.md"
    stale.write_text("# old\n")
    from mothermodel.clidoc import main

    assert main(["--check", str(stale)]) == 1
    assert main(["--check", str(REPO / "docs" / "cli-reference.md")]) == 0


def test_readme_links_every_doc():
    readme = (REPO / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    missing = sorted(p for p in linked if not (REPO / p).exists())
    assert missing == [], f"README links to missing files: {missing}"
    unlinked = sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md") if f"docs/{p.name}" not in linked)
    assert unlinked == [], f"docs not linked from README.md's Documentation list: {unlinked}"
