"""The pages a user opens: the index (fast, on a fabricated run) and, after a real tiny run of the
DAG, every page in a real headless browser (slow).

Runs workflow/config/tiny.yaml, down to FOMM with one seed, to reports/index.html and
reports/regression.html (the committed tiny baseline must pass), then opens every page in Debian's
chromium (installed with apt-get when missing): no console or script errors, no resource that
fails to load, every image decoded, a screenshot that is not blank, nothing wider than a
1400-px window. Finally a baseline that says
FOMM was better makes `snakemake reports/regression.html` fail, with the page kept in place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from reports.regression import read_baseline, write_baseline
from tests.conftest import REPO, tiny_fomm_one_seed
from tests.test_workflow import SNAKEMAKE, _env

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

# Injected at the top of a copy of each page: records script errors, console.error calls and
# resources that fail to load; on load, lists images that did not decode into #animbench-check.
PROBE = """<script>
window.__problems = [];
const __error = console.error.bind(console);
console.error = (...a) => { window.__problems.push("console.error: " + a.join(" ")); __error(...a); };
window.addEventListener("error", e => {
  const t = e.target;
  window.__problems.push(t && t !== window ? "failed to load " + (t.src || t.href) : "script error: " + e.message);
}, true);
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "animbench-check";
  out.textContent = JSON.stringify({images: document.images.length, broken: broken, problems: window.__problems,
                                    width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


#: The pages must fit a window this wide without scrolling sideways.
WINDOW_WIDTH = 1400


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(["flock", "/tmp/apt.lock", *command], check=True, env=env, capture_output=True)
    return shutil.which("chromium")


def _open(chromium: str, page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", f"--window-size={WINDOW_WIDTH},1600", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


def check_page(chromium: str, page: Path, work: Path) -> dict:
    """Open ``page`` (a probed copy beside it, so relative links resolve); return what it found."""
    probed = page.with_name(f".probe-{page.name}")
    html = page.read_text()
    probed.write_text(re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + PROBE, html, count=1))
    try:
        dom = _open(chromium, probed, work / f"profile-{page.stem}", "--dump-dom")
        found = re.search(r'<pre id="animbench-check">(.*?)</pre>', dom.stdout, flags=re.S)
        assert found, f"{page}: the page never finished loading\n{dom.stderr[-2000:]}"
        check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        shot = work / f"{page.stem}.png"
        _open(chromium, page, work / f"profile-{page.stem}-shot", f"--screenshot={shot}")
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
        check["ink"] = float((pixels < 200).mean())  # fraction of the screenshot that is not background
        check["console"] = re.findall(r"CONSOLE[^\n]*", dom.stderr)
        return check
    finally:
        probed.unlink()


def test_index_links_pages_plots_curves_and_lists_every_job(tmp_path):
    from animbench.workflow_config import load_workflow_config
    from reports.index import render_index

    root = tmp_path / "run"
    run_dir = root / "results/synthetic/fomm"
    run_dir.mkdir(parents=True)
    (run_dir / "train_log.csv").write_text(
        "epoch,steps,seconds,loss_perceptual,loss_equivariance_value,lr_generator\n1,4,1.0,90.0,0.5,2e-4\n2,4,1.0,80.0,0.4,2e-4\n"
    )
    (run_dir / "run.json").write_text(json.dumps({"device": "cuda:0", "processes": 2, "epochs": 2}))
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for job, line in {"train/synthetic/fomm": "12.5\t0:00:12\t812.0", "reconstruct/synthetic/fomm": "3.0\t0:00:03\tNA"}.items():
        path = root / "benchmarks" / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + line + "\t0\t0\t0\t0\t0\t1.0\t2.5\n")
    log = root / "logs/reconstruct/synthetic/fomm.log"
    log.parent.mkdir(parents=True)
    log.write_text("reconstructions indexed in x/index.csv (device cuda:0)\n")
    reports = root / "reports"
    reports.mkdir()
    (reports / "table1.html").write_text("<html></html>")
    config = load_workflow_config([], REPO)
    html = render_index(config, reports / "index.html", REPO, root).read_text()
    assert 'href="table1.html"' in html and 'href="regression.html"' not in html  # only pages that exist
    png = reports / "curves/synthetic/fomm.png"
    assert png.is_file() and Image.open(png).size[0] > 100
    assert '<img src="curves/synthetic/fomm.png"' in html
    rows = re.findall(r"<tr><td class=\"name\">(\w+)</td><td class=\"name\">([^<]*)</td><td class=\"name\">([^<]*)</td>\s*<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", html)
    assert ("reconstruct", "synthetic/fomm", "cuda:0", "3.0", "2.5", "—") in rows, rows
    assert ("train", "synthetic/fomm", "cuda:0 × 2 processes", "12.5", "2.5", "812") in rows, rows


@pytest.mark.slow
def test_tiny_run_pages_open_cleanly_and_regression_gates_the_run(tmp_path):
    chromium = _chromium()
    config = REPO / "workflow/config/tiny.yaml"
    fomm_only = tiny_fomm_one_seed(tmp_path / "fomm_only.yaml")
    run = tmp_path / "run"
    run.mkdir()
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--cores", "2"]
    result = subprocess.run(
        [*command, "reports/index.html", "reports/regression.html", "--configfile", str(config), str(fomm_only)],
        cwd=run, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = run / "reports"
    assert "regression check passed" in (reports / "regression.html").read_text()
    # Render the index again now that the regression page exists, so that it links it too.
    result = subprocess.run(
        [*command, "reports/index.html", "--forcerun", "index", "--configfile", str(config), str(fomm_only)],
        cwd=run, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    index = (reports / "index.html").read_text()
    for page in ("table1.html", "compare.html", "regression.html"):
        assert f'href="{page}"' in index
    assert re.search(r'<img src="curves/synthetic/fomm-seed0.png"', index)
    assert re.search(r"<td class=\"name\">train</td><td class=\"name\">synthetic/fomm-seed0</td><td class=\"name\">cpu</td>", index), index

    work = tmp_path / "browser"
    work.mkdir()
    for page in ("index.html", "table1.html", "compare.html", "regression.html"):
        check = check_page(chromium, reports / page, work)
        assert check["problems"] == [] and check["broken"] == [] and check["console"] == [], (page, check)
        assert check["width"] <= WINDOW_WIDTH, (page, check)  # no table overflows the window
        # A blank page has ~0 dark pixels; the sparsest page here (text, one plot) ~1 %.
        assert check["ink"] > 0.003, (page, check)
        if page != "regression.html":
            assert check["images"] >= 1, (page, check)

    # A baseline claiming L1 was 10 % lower on every video: the regression target fails.
    baseline = read_baseline(REPO / "workflow/baselines/tiny.csv")
    better = baseline.assign(sum=baseline["sum"] * (1 - 0.1 * (baseline["metric"] == "l1")))
    name = f"tiny-test-{tmp_path.name}"
    write_baseline(better, REPO / "workflow/baselines" / f"{name}.csv")
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"regression": {"baseline": name}}))
    try:
        result = subprocess.run(
            [*command, "reports/regression.html", "--configfile", str(config), str(fomm_only), str(override)],
            cwd=run, env=_env(), capture_output=True, text=True,
        )
    finally:
        (REPO / "workflow/baselines" / f"{name}.csv").unlink()
    assert result.returncode != 0
    assert "regression check failed" in result.stdout + result.stderr
    kept = (reports / "regression.html").read_text()  # where the user looks
    assert "regression check failed" in kept and re.search(r'<tr class="regressed">', kept)
