"""Render a comparison's report.html in a real headless browser at 1,400 px wide: a screenshot, and a check
that nothing scrolls sideways (the page's scrollWidth ≤ 1,400).

Why a browser: whether a table spreads past the window is decided by the browser's layout (fonts, wrapping,
table layout), which no HTML-to-image converter reproduces; weasyprint or html2image are not browsers.
It drives Chromium through Playwright (``pip install playwright``). Playwright's own browser download
needs its CDN; where only package registries are reached, a system Chromium works as well
(``apt-get install chromium``): ``--browser`` names it, else the first of ``chromium``,
``chromium-browser``, ``google-chrome`` on the PATH, else Playwright's own.

    python bench/report_screenshot.py runs/compare-optimizers/report/report.html
    python bench/report_screenshot.py REPORT.html --out docs/report-screenshot.png --height 2400

The screenshot is the page's top ``--height`` CSS pixels, saved as a palette PNG to keep it small
(docs/ keeps one under 300 KB). Exits non-zero, naming the widths, when the page is wider than the window.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

WIDTH = 1400


def browser_path(given: str | None) -> str | None:
    """The Chromium to drive: ``given``, else one on the PATH, else None (Playwright's own)."""
    if given:
        return given
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


def render(html: Path, out: Path, *, height: int, executable: str | None) -> tuple[int, int]:
    """Screenshot ``html`` at :data:`WIDTH` px into ``out``; returns (scrollWidth, scrollHeight) of the page."""
    from playwright.sync_api import sync_playwright
    from PIL import Image

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": height})
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        width, full = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        shot = page.screenshot(clip={"x": 0, "y": 0, "width": WIDTH, "height": min(height, full)})
        browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=64)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return width, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="a report.html (harness compare / harness run writes one)")
    parser.add_argument("--out", type=Path, default=Path("docs/report-screenshot.png"))
    parser.add_argument("--height", type=int, default=2200, help="CSS pixels of the page's top to keep")
    parser.add_argument("--browser", help="path of a Chromium executable (default: one on the PATH)")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        parser.error(f"{args.html}: no such file; give the report.html of a comparison")
    width, full = render(args.html, args.out, height=args.height, executable=browser_path(args.browser))
    size = args.out.stat().st_size
    print(f"{args.html}: scrollWidth {width} px at a {WIDTH} px window, page {full} px tall; "
          f"{args.out} ({size / 1024:.0f} KB)")
    if width > WIDTH:
        print(f"the page scrolls sideways: {width} px wide in a {WIDTH} px window", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
