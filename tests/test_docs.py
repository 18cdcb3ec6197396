"""The README and the documentation site: short, self-contained, no broken links, and a
configuration reference that lists every config field (docs/gen_config_reference.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from metarl.autometa.config import SearchConfig
from metarl.config import TrainConfig
from metarl.fewshot.config import FewShotConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Files the repository does not have; spelled in two parts so that this test does not name them.
OUTSIDE_FILES = ("REFERENCE" + ".md", "DESIGN" + ".md")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_reference",
                                                  DOCS / "gen_config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text)
            if not re.match(r"^[a-z]+:", target) and not target.startswith("#")]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("path", [README, *_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_references_to_files_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name in OUTSIDE_FILES:
        assert name not in text, f"{path.relative_to(ROOT)} cites {name}, which is not in the repo"


def test_package_cites_no_files_outside_the_repository() -> None:
    for folder in ("metarl", "envs", "experiments"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".md"):
                text = path.read_text(encoding="utf-8")
                for name in OUTSIDE_FILES:
                    assert name not in text, f"{path.relative_to(ROOT)} cites {name}"


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as GitHub and MkDocs both spell them."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


@pytest.mark.parametrize("path", [README, *_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path: Path) -> None:
    generated = (DOCS / GENERATOR.PAGE).resolve()
    for target in _links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve()
        assert resolved.exists() or resolved == generated, (
            f"{path.relative_to(ROOT)} links to {target}, which does not exist")
        if anchor and resolved.suffix == ".md" and resolved != generated:
            assert anchor in _anchors(resolved), (
                f"{path.relative_to(ROOT)} links to {target}: no such heading")


def test_every_page_is_in_the_site_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def entries(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [page for item in nav for page in entries(item)]
        if isinstance(nav, dict):
            return [page for value in nav.values() for page in entries(value)]
        return []

    in_nav = set(entries(config["nav"]))
    pages = {path.relative_to(DOCS).as_posix() for path in _pages()} | {GENERATOR.PAGE}
    assert pages - in_nav == set(), "pages missing from mkdocs.yml's nav"
    assert in_nav - pages == set(), "nav entries without a page"


def _rows(class_name: str) -> dict[str, str]:
    """Field name -> its table row, in the section of ``class_name`` of the generated page."""
    section = GENERATOR.render().split(f"## {class_name}\n", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip().strip("`"): line for line in section.splitlines()
            if line.startswith("| `")}


@pytest.mark.parametrize("cls", [TrainConfig, FewShotConfig, SearchConfig],
                         ids=lambda cls: cls.__name__)
def test_configuration_reference_lists_every_field(cls: type) -> None:
    assert set(_rows(cls.__name__)) == {field.name for field in dataclasses.fields(cls)}


def test_configuration_reference_states_ranges_and_meanings() -> None:
    train, fewshot, search = _rows("TrainConfig"), _rows("FewShotConfig"), _rows("SearchConfig")
    assert "in (0, 1)" in train["ls_backtrack"]
    assert "one of 'trpo', 'adam', 'sgd', 'promp'" in train["outer"]
    assert "discount factor" in train["gamma"]
    assert "one of 'adam', 'sgd'" in fewshot["outer"]  # a loop over (name, choices) pairs
    assert ">= 0; 0 (all) or >= 2" in search["first_round"]  # checked twice
    # an entry of the docstring that names several fields describes each of them
    assert "the network" in search["cells_per_stage"]


def test_every_module_has_one_api_entry() -> None:
    """The API pages document every module of the package, each once."""
    listed = [name for page in (DOCS / "api").glob("*.md")
              for name in re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M)]
    modules = set()
    for path in [*(ROOT / "metarl").rglob("*.py"), *(ROOT / "envs").rglob("*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.add(".".join(parts))
    modules -= {"metarl", "metarl.__main__"}  # the version string and `python -m metarl`
    assert sorted(m for m in set(listed) if listed.count(m) > 1) == []
    assert sorted(modules - set(listed)) == []
