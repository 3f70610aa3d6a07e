"""The documentation site builds, strictly and offline, and the README stays a short door to it.

`mkdocs build --strict` fails on a broken link or anchor, a nav entry without its page and a page
left out of the nav (mkdocs.yml's `validation`), so this test is CI's check of the whole site.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD_COMMAND = ". .venv/bin/activate && mkdocs build --strict"


def nav_pages(nav: list) -> list[str]:
    """Every Markdown file the nav names, in order (sections flattened)."""
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            pages.extend(nav_pages(value))
        else:
            pages.append(value)
    return pages


def config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_the_site_builds_strictly_with_every_nav_page(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pages = nav_pages(config()["nav"])
    assert "index.md" in pages and len(pages) >= 25
    for page in pages:
        stem = Path(page).with_suffix("")
        built = site / (stem.parent if stem.name == "index" else stem)  # mkdocs' directory URLs
        assert (built / "index.html").is_file(), f"{page} was not built"
    # offline: no page loads anything from another site (web fonts, scripts, images, styles)
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not re.search(r'<(script|img|link)[^>]+(src|href)="https?://', text), html


def test_every_page_is_in_the_nav_and_nothing_is_left_out() -> None:
    settings = config()
    pages = nav_pages(settings["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk
    assert len(pages) == len(set(pages))
    assert "not_in_nav" not in settings
    assert settings["theme"]["font"] is False
    assert [p if isinstance(p, str) else next(iter(p)) for p in settings["plugins"]] == ["search"]


def test_the_readme_is_short_and_builds_the_site() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    assert BUILD_COMMAND in readme and "mkdocs serve" in readme
    # the two commands come first: the main job, then the tests
    blocks = readme.split("```bash\n")
    assert "medboard serve --submit" in blocks[1].split("\n```")[0]
    assert "python -m pytest" in blocks[2].split("\n```")[0]


def test_the_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links into the site"
    for target in local:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_every_setting_medboard_reads_is_documented() -> None:
    """Each MEDBOARD_* variable the package reads has its row in reference/configuration.md."""
    read = set()
    for source in (ROOT / "src" / "medboard").rglob("*.py"):
        read |= set(re.findall(r"""["'](MEDBOARD_[A-Z_]+)["']""", source.read_text("utf-8")))
    assert len(read) >= 8
    page = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, f"not in docs/reference/configuration.md: {missing}"
