"""`scenetg inspect`: statistics tables, PNG plots linked from the report, consistency checks, and
the report rendered by headless Chromium (no console errors, every image loads, not blank)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scenetg.cli import main
from scenetg.video.synthetic import write_synthetic_video

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ["scene_length.png", "query_length.png", "clip_margin.png", "kept_ratio.png"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGE_CHECK = (
    "<script>addEventListener('load', () => {"
    " for (const i of document.images) if (!(i.complete && i.naturalWidth > 0))"
    "  console.error('broken image: ' + i.src.slice(0, 120));"
    " console.log('images-checked ' + document.images.length); });</script>"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("report")
    videos = root / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "kitchen.mp4", [2.0, 1.5, 2.5], 25.0, size=(160, 96), seed=1)
    write_synthetic_video(videos / "street & <b>.mp4", [1.5, 2.0, 2.0, 1.5], 24.0, size=(160, 96), seed=2)
    out = root / "out"
    code = main(["build", "--videos", str(videos), "--out", str(out),
                 "--config", str(ROOT / "pipelines/demo/build.yaml"),
                 "--caption-model", str(tiny_models["qwen"]), "--clip-model", str(tiny_models["clip"])])
    assert code == 0
    return out


def _colours(png: Path) -> int:
    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    return len(colours) if colours is not None else 1 << 16


@pytest.mark.slow
def test_inspect_prints_tables_and_links_the_plots(built, capsys):
    assert main(["inspect", str(built)]) == 0
    printed = capsys.readouterr().out
    for title in ("summary", "splits", "drop reasons", "distributions"):
        assert title in printed
    assert "queries generated" in printed and "CLIP margin, kept" in printed
    assert "{" not in printed  # tables, not dict reprs
    page = (built / "report" / "index.html").read_text()
    for name in PLOTS:
        png = built / "report" / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert _colours(png) > 2, name
        assert f"href='plots/{name}'" in page and f"src='plots/{name}'" in page
    assert page.count('<table class="dataframe stats">') >= 5
    assert "street &amp; &lt;b&gt;" in page and "<b>.mp4" not in page  # names are escaped


@pytest.mark.slow
def test_inspect_flags_a_duplicated_dataset(built, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    shard = sorted((out / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    pq.write_table(pa.concat_tables([table, table]), shard)
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert "problem: data/: " in err and "appear more than once" in err
    assert err.strip().splitlines()[-1].startswith("error: ")
    page = (out / "report" / "index.html").read_text()
    assert "class=problems" in page and "appear more than once" in page


def _render(page: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """Open `page` in headless Chromium; returns (console messages, screenshot)."""
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,1600", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = re.findall(r":CONSOLE[^\]]*\] \"(.*)\", source:", proc.stderr)
    return console, shot


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium; .ci/run does)")
def test_the_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><img src='missing.png'><script>noSuchFunction();</script>" + IMAGE_CHECK)
    console, _ = _render(bad, tmp_path)
    assert any("noSuchFunction" in m for m in console), console
    assert any(m.startswith("broken image: ") for m in console), console


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(built, tmp_path):
    assert main(["inspect", str(built)]) == 0
    report = built / "report"
    page = report / "_render_check.html"  # beside index.html, so the plot links resolve alike
    page.write_text((report / "index.html").read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    try:
        console, shot = _render(page, tmp_path)
    finally:
        page.unlink()
    n_images = (report / "index.html").read_text().count("<img ")
    assert console == [f"images-checked {n_images}"], console
    assert n_images >= len(PLOTS) + 7  # the plots and one thumbnail per scene
    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
    assert _colours(shot) > 50  # text, tables, plots and thumbnails, not a blank page


@pytest.mark.parametrize("kept_every", [0, 2])
def test_report_of_a_folder_without_videos_or_kept_queries(tmp_path, kept_every):
    """Videos moved away (or 0 kept): the report is still written, strips say why they are empty."""
    from scenetg.curate.dataset.report import write_report
    from tests.test_publish import audit_rows, make_dataset

    out = make_dataset(tmp_path / "out", audit_rows(n_videos=2, kept_every=kept_every))
    page = write_report(out, tmp_path / "moved-away").read_text()
    assert page.count("no thumbnails: ") == 2 and "<img src='data:" not in page
    for name in PLOTS:
        assert (out / "report" / "plots" / name).is_file()
    assert "<td>queries kept</td>\n      <td>" + ("0" if kept_every == 0 else "4") + "</td>" in page
