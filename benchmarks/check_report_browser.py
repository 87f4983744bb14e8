"""Open an evaluation report in headless Chromium: every image loads, every table is there and
fits its column at the reader's width (no table wider than its container: nothing cut off or
hidden behind a scroll bar).

    python benchmarks/check_report_browser.py runs/demo/evaluate-*/report.html \
        [--screenshot docs/images/report.png]

Needs the `chromium` binary (Debian: `apt-get install -y chromium`). The page is copied into a
temporary folder with a small script appended that, once the page has loaded, writes what it
found (image count, images with naturalWidth 0, table classes) into a marker element; Chromium's
`--dump-dom` prints the DOM and the marker is read back. No network, no extra Python packages.
Exit status 0 when the page passes, 1 otherwise.
"""

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIRED_TABLES = ["counterfactuals", "relevance-maps", "timing", "every-figure", "versions"]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
PROBE = """
<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var found = {
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.alt; }),
    tables: Array.from(document.querySelectorAll("table"))
                 .map(function (t) { return t.className; }),
    rows: document.querySelectorAll("table.counterfactuals tbody tr").length,
    // A table wider than the box it sits in: its right-hand columns are cut off or scrolled.
    overflowing: Array.from(document.querySelectorAll("table"))
                      .filter(function (t) {
                        return t.scrollWidth > t.parentElement.clientWidth + 1;
                      })
                      .map(function (t) {
                        return t.className + " (" + t.scrollWidth + " px in "
                               + t.parentElement.clientWidth + " px)";
                      })
  };
  var marker = document.createElement("pre");
  marker.id = "cfgen-check";
  marker.textContent = JSON.stringify(found);
  document.body.appendChild(marker);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium not found; install it (Debian: apt-get install -y chromium)")


def run_browser(args: list[str], profile: Path, timeout: int = 120) -> str:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        sys.exit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def probe(report: Path, workdir: Path, width: int) -> dict:
    """What the loaded page holds, as seen by Chromium in a window `width` px wide."""
    page = report.read_text(encoding="utf-8")
    probed = workdir / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_browser(
        [
            "--virtual-time-budget=10000",
            f"--window-size={width},1000",
            "--dump-dom",
            probed.as_uri(),
        ],
        workdir / "profile",
    )
    match = re.search(r'<pre id="cfgen-check">(.*?)</pre>', dom, re.S)
    if match is None:
        sys.exit("the probe did not run: no marker in the DOM Chromium dumped")
    return json.loads(html.unescape(match.group(1)))


def problems(found: dict) -> list[str]:
    """Everything wrong with the page, empty when it passes."""
    issues = [f"image did not load: {alt!r}" for alt in found["broken"]]
    if found["images"] == 0:
        issues.append("the page has no image")
    issues += [f"table missing: {name}" for name in REQUIRED_TABLES if name not in found["tables"]]
    if found["rows"] == 0:
        issues.append("the counterfactual table has no row")
    issues += [f"table wider than its container: {table}" for table in found["overflowing"]]
    return issues


def screenshot(report: Path, path: Path, workdir: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    run_browser(
        [f"--screenshot={path.resolve()}", f"--window-size={width},{height}", report.as_uri()],
        workdir / "profile-shot",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="report.html written by `cfgen evaluate`")
    parser.add_argument("--screenshot", type=Path, help="save a PNG screenshot here")
    parser.add_argument(
        "--size", default="1280,2400", help="window WIDTH,HEIGHT of the check and the screenshot"
    )
    args = parser.parse_args(argv)
    report = args.report.resolve()
    width, height = (int(v) for v in args.size.split(","))
    with tempfile.TemporaryDirectory(prefix="cfgen-browser-") as tmp:
        found = probe(report, Path(tmp), width)
        issues = problems(found)
        print(
            f"{report}: {found['images']} images, {len(found['broken'])} broken; tables "
            f"{found['tables']}; headline rows {found['rows']}"
        )
        if args.screenshot:
            screenshot(report, args.screenshot, Path(tmp), width, height)
            print(f"screenshot: {args.screenshot}")
    for issue in issues:
        print(f"FAIL: {issue}")
    print("PASS" if not issues else f"{len(issues)} problem(s)")
    return 0 if not issues else 1


if __name__ == "__main__":
    sys.exit(main())
