"""The docs check: every Study in docs/ and examples/ is valid, and links between pages resolve.

A fenced ```yaml block in docs/*.md whose documents include `kind: Study` must be a complete,
valid Study (`parse_study`, the same checks as `kubetune validate` and the operator). Every other
yaml block must at least parse (helm values, a Katib Experiment) and must not look like a Study
without saying `kind: Study`.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.operator.spec.validation import StudyInvalid, load_study_file, parse_study

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)  # fmt: skip
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def yaml_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of each ```yaml / ```yml block."""
    out = []
    for m in FENCE.finditer(text):
        if m.group("lang").strip().lower() in ("yaml", "yml"):
            line = text.count("\n", 0, m.start()) + 1
            out.append((line, textwrap.dedent(m.group("body"))))
    return out


def study_examples(pages: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for page in pages:
        for line, body in yaml_blocks(page.read_text()):
            for i, doc in enumerate(d for d in yaml.safe_load_all(body) if d is not None):
                if isinstance(doc, dict) and doc.get("kind") == "Study":
                    found.append((f"{page.relative_to(page.parents[1])}:{line}#{i}", doc))
    return found


def study_problems(pages: list[Path]) -> list[str]:
    """Every problem of every Study example in the pages, as `page:line#doc: path: reason`."""
    problems = []
    for where, doc in study_examples(pages):
        try:
            parse_study(doc, where)
        except StudyInvalid as exc:
            problems.extend(f"{where}: {e}" for e in exc.errors)
    return problems


STUDIES = study_examples(doc_pages())


def test_docs_exist() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    expected = {
        "index.md",
        "quickstart.md",
        "algorithms.md",
        "trial-sdk.md",
        "operations.md",
        "migrating-from-katib.md",
        "local-runs.md",
    }
    assert expected <= names
    assert (DOCS / "reference" / "study.md").exists()


def test_docs_have_study_examples() -> None:
    pages = {where.split(":")[0] for where, _ in STUDIES}
    # Each of these pages shows at least one full Study.
    for page in ("index.md", "quickstart.md", "algorithms.md", "local-runs.md"):
        assert f"docs/{page}" in pages, page
    # Every algorithm with its own section in algorithms.md has an example somewhere.
    algorithms = {doc["spec"]["algorithm"]["name"] for _, doc in STUDIES}
    assert {"asha", "hyperband", "pbt", "mopbt", "moasha"} <= algorithms


@pytest.mark.parametrize(("where", "doc"), STUDIES, ids=[w for w, _ in STUDIES])
def test_docs_study_example_is_valid(where: str, doc: dict[str, Any]) -> None:
    try:
        parse_study(doc, where)
    except StudyInvalid as exc:
        pytest.fail(f"{where} is not a valid Study:\n{exc}")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    try:
        studies = load_study_file(path)
    except StudyInvalid as exc:
        pytest.fail(f"{path.name} is not a valid Study:\n{exc}")
    assert studies


def test_non_study_yaml_blocks_parse_and_are_not_studies() -> None:
    """Snippets are fine (helm values, a Katib Experiment), but never an unmarked Study."""
    for page in doc_pages():
        for line, body in yaml_blocks(page.read_text()):
            where = f"{page.relative_to(REPO)}:{line}"
            try:
                docs = [d for d in yaml.safe_load_all(body) if d is not None]
            except yaml.YAMLError as exc:
                pytest.fail(f"{where}: yaml block does not parse: {exc}")
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") != "Study":
                    looks_like_study = "spec" in doc and "searchSpace" in (doc.get("spec") or {})
                    assert not looks_like_study, f"{where}: a Study without `kind: Study`"


# -- the check itself catches a broken example -------------------------------------------------


BROKEN_PAGE = """\
# A page

```yaml
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata:
  name: broken
spec:
  objectives:
    - metric: val_loss
      goal: minimise
  searchSpace:
    lr: {type: float, low: 0, high: 0.1, log: true}
  resource: {metric: epoch, min: 1, max: 2}
  algorithm:
    name: asha
    asha: {etta: 3}
  trialTemplate:
    spec:
      containers:
        - name: trial
          image: x
```
"""


def test_broken_example_is_caught() -> None:
    ((line, body),) = yaml_blocks(BROKEN_PAGE)
    assert line == 3
    (doc,) = yaml.safe_load_all(body)
    with pytest.raises(StudyInvalid) as info:
        parse_study(doc, "broken.md")
    message = str(info.value)
    assert "spec.objectives[0].goal" in message  # "minimise" is not an enum value
    assert "etta" in message  # unknown setting
    assert "spec.trialTemplate.spec.containers[0].command" in message
    assert "log" in message  # log scale with low = 0


def test_broken_example_in_a_docs_tree_fails_the_check(tmp_path: Path) -> None:
    """The same collection + validation that runs on docs/ rejects a page with a broken Study,
    also when its fence is indented (inside a list item), and passes the real docs."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nNo examples here.\n")
    block = BROKEN_PAGE[BROKEN_PAGE.index("```yaml") :]
    indented = "# I\n\n1. Apply this:\n\n" + textwrap.indent(block, "   ")
    (docs / "broken.md").write_text(BROKEN_PAGE)
    (docs / "indented.md").write_text(indented)
    pages = sorted(docs.glob("*.md"))
    problems = study_problems(pages)
    assert any(p.startswith("docs/broken.md:3#0: spec.objectives[0].goal") for p in problems)
    assert any(p.startswith("docs/indented.md:") for p in problems), problems
    assert study_problems(doc_pages()) == []


# -- links ---------------------------------------------------------------------------------------


def anchors(path: Path) -> set[str]:
    """GitHub-style heading anchors of a markdown page."""
    out = set()
    text = FENCE.sub("", path.read_text())
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        title = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        out.add(slug)
    return out


def test_relative_links_resolve() -> None:
    problems = []
    for page in doc_pages():
        text = FENCE.sub("", page.read_text())
        for m in LINK.finditer(text):
            target = m.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # external (https:, mailto:)
            path_part, _, fragment = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                problems.append(f"{page.relative_to(REPO)}: {target}: no such file")
                continue
            if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                problems.append(f"{page.relative_to(REPO)}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def test_link_checker_catches_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## Next steps\n\nSee [b](b.md) and [x](a.md#nope).\n")
    text = (tmp_path / "a.md").read_text()
    targets = [m.group("target") for m in LINK.finditer(text)]
    assert targets == ["b.md", "a.md#nope"]
    assert not (tmp_path / "b.md").exists()
    assert "nope" not in anchors(tmp_path / "a.md")
    assert "next-steps" in anchors(tmp_path / "a.md")
