"""Packaging: declared dependencies match imports, optional extras, OpenCV guard, a wheel install."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (requires-python): the same parser, as the tomli backport
    import tomli as tomllib

from scenetg.cli import main
from scenetg.errors import ScenetgError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scenetg"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Imported module -> the extra that provides it (imported inside functions only, after require_extra).
OPTIONAL_MODULES = {"ray": "ray", "openai": "openai", "trl": "train", "peft": "train", "vllm": "vllm"}
# Modules that exist only behind `require_extra` (their whole job is an optional library's API):
# they may import it at module level; nothing in the core imports them at module level.
EXTRA_ONLY_MODULES = {"rl/trainer.py": "train", "rl/sft.py": "train", "rl/vllm_sync.py": "train"}
# Extras that cannot be installed on this CPU machine (vLLM needs CUDA): module -> its distribution.
NOT_INSTALLED_HERE = {"vllm": {"vllm"}}
# Declared for what runs beside our imports: open_clip and transformers' video processors.
INDIRECT_CORE = {"torchvision"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(requirement: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))


def _imports() -> dict[str, list[tuple[Path, bool]]]:
    """Top-level third-party module -> [(file, imported at module level)] over scenetg/."""
    found: dict[str, list[tuple[Path, bool]]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root in sys.stdlib_module_names or root in ("scenetg", "__future__"):
                    continue
                found.setdefault(root, []).append((path, id(node) in top_level))
    return found


def test_declared_dependencies_are_what_the_code_imports():
    core = {_req_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {k: {_req_name(r) for r in v} for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    dists = metadata.packages_distributions()
    used: set[str] = set()
    for module, sites in sorted(_imports().items()):
        provided = {_norm(d) for d in dists.get(module, [])} or NOT_INSTALLED_HERE.get(module, set())
        assert provided, f"{module}: imported but not installed"
        if module in OPTIONAL_MODULES:
            extra = OPTIONAL_MODULES[module]
            assert provided & extras[extra], f"{module} must come from the [{extra}] extra"
            assert not provided & core, f"{module} is optional: not a core dependency"
            top = [
                str(p.relative_to(ROOT)) for p, at_top in sites
                if at_top and str(p.relative_to(PACKAGE)) not in EXTRA_ONLY_MODULES
            ]
            assert not top, f"{module} imported at module level in {top}: the core install breaks"
        else:
            assert provided & core, f"{module} ({sorted(provided)}) is imported but not a core dependency"
        used |= provided
    unused = core - used - INDIRECT_CORE
    assert not unused, f"declared but never imported: {sorted(unused)}"
    assert "trl==1.16.0" in PYPROJECT["project"]["optional-dependencies"]["train"]
    assert any(r.startswith("scenedetect>=0.7,<0.8") for r in PYPROJECT["project"]["dependencies"])
    installed = metadata.version("scenedetect")
    assert installed.startswith("0.7."), f"tested range is 0.7.x, the venv has {installed}"


def test_make_setup_installs_every_extra_but_deepspeed():
    """`make setup` gives a developer everything the tests exercise; DeepSpeed (GPU training only,
    it builds CUDA ops) and vLLM (needs CUDA) are declared for `pip install 'scenetg[deepspeed]'` /
    `'scenetg[vllm]'` and left out."""
    makefile = (ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if "pip install" in ln and "-e" in ln)
    installed = set(re.search(r"\[([a-z,]+)\]", line).group(1).split(","))
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert installed == declared - {"all", "deepspeed", "vllm"}, line
    assert PYPROJECT["project"]["optional-dependencies"]["deepspeed"] == ["deepspeed>=0.15"]


def test_every_extra_the_docs_and_configs_name_is_declared():
    """An install hint such as `pip install 'scenetg[deepspeed]'` must name a real extra (pip
    only warns about an unknown one and installs the core)."""
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "pipelines").rglob("*.yaml"),
             *PACKAGE.rglob("*.py")]
    named = {(f.relative_to(ROOT).as_posix(), extra) for f in files
             for group in re.findall(r"scenetg\[([a-z,]+)\]", f.read_text(encoding="utf-8"))
             for extra in group.split(",")}
    assert ("pipelines/accelerate/multi_gpu_zero3.yaml", "deepspeed") in named
    assert not {(f, e) for f, e in named if e not in declared}


def test_tests_read_pyproject_on_every_supported_python():
    """tomllib is stdlib from 3.11; while requires-python admits older, [dev] brings tomli."""
    lowest = tuple(map(int, re.match(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups()))
    if lowest < (3, 11):
        dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
        assert any(_req_name(r) == "tomli" and "python_version < '3.11'" in r for r in dev), dev


def test_core_modules_import_without_the_optional_extras():
    """Every scenetg module imports with ray, openai and the training stack absent."""
    extra_only = tuple("scenetg." + m[:-3].replace("/", ".") for m in EXTRA_ONLY_MODULES)
    code = (
        "import sys, pkgutil, importlib\n"
        "for m in ('ray', 'openai', 'trl', 'peft', 'accelerate'): sys.modules[m] = None\n"
        "import scenetg\n"
        "for info in pkgutil.walk_packages(scenetg.__path__, 'scenetg.'):\n"
        f"    if info.name not in {extra_only!r}:  # EXTRA_ONLY_MODULES\n"
        "        importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_missing_ray_extra_is_one_line_naming_it(tmp_path, tiny_models, monkeypatch, capsys):
    from scenetg.video.synthetic import write_synthetic_video

    videos = tmp_path / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "a.mp4", [1.0, 1.0], 25.0, size=(64, 48))
    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["build", "--videos", str(videos), "--out", str(tmp_path / "out"), "--engine", "ray",
                 "--config", str(ROOT / "pipelines/demo/build.yaml"),
                 "--caption-model", str(tiny_models["qwen"]), "--clip-model", str(tiny_models["clip"])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [
        "error: --engine ray (engine.name: ray) needs the [ray] extra: pip install 'scenetg[ray]'"]


def test_missing_openai_extra_names_it(monkeypatch):
    from scenetg.config import CaptionsConfig
    from scenetg.curate.stages.captions import check_caption_model

    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ScenetgError, match=re.escape("needs the [openai] extra: pip install 'scenetg[openai]'")):
        check_caption_model(CaptionsConfig(backend="openai", model="served"))


def test_broken_extra_is_not_reported_as_missing(tmp_path, monkeypatch):
    from scenetg.extras import require_extra

    # The package is there but one of its own imports fails: the real error, not "install it".
    (tmp_path / "half_installed").mkdir()
    (tmp_path / "half_installed" / "__init__.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="no_such_dependency_xyz") as err:
        require_extra("half_installed", "x", "feature")
    assert not isinstance(err.value, ScenetgError)


def test_headless_opencv_beside_opencv_is_refused(monkeypatch):
    from scenetg.curate.stages import shots

    real = metadata.version

    def fake_version(name: str) -> str:
        if name == "opencv-python-headless":
            return "4.10.0.84"
        return real(name)

    shots.check_opencv_install()  # this venv: opencv-python alone
    monkeypatch.setattr(shots.metadata, "version", fake_version)
    with pytest.raises(ScenetgError) as err:
        shots.check_opencv_install()
    message = str(err.value)
    assert "opencv-python-headless" in message and "pip uninstall -y opencv-python-headless" in message
    assert "\n" not in message


def _copy_source(dest: Path) -> Path:
    """The checkout's sources without build outputs, so building never writes into the checkout."""
    skip = shutil.ignore_patterns(".git", ".venv", ".venv-vllm", "__pycache__", "*.egg-info", "build", "dist",
                                  "out", "demo_out", ".pytest_cache", ".ruff_cache")
    return Path(shutil.copytree(ROOT, dest, symlinks=True, ignore=skip))


def _venv_beside_project(venv: Path) -> Path:
    """A fresh venv that reuses the project venv's packages (torch & co.) without copying them.

    `--system-site-packages` exposes the base interpreter's packages, not the project venv's,
    so a .pth line appends the project venv's site-packages after the new venv's own. Lines
    of that folder's own .pth files (the editable install of the checkout) are not run.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_dir = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site_dir, "scenetg_parent_venv.pth").write_text(parent + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_and_builds_a_dataset_outside_the_checkout(tmp_path, tiny_models):
    from scenetg.video.synthetic import write_synthetic_video

    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("scenetg-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for data in ("scenetg/py.typed", "scenetg/curate/dataset/templates/scenetg_dataset_card.md",
                 "scenetg/demo_configs/build.yaml", "scenetg/demo_configs/eval.yaml",
                 "scenetg/demo_configs/toy_train.yaml", "scenetg/demo_configs/toy_eval.yaml",
                 "scenetg/demo_assets/toy_sft/model.safetensors", "scenetg/demo_assets/toy_sft/provenance.json"):
        assert data in names, data
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert 'Requires-Dist: ray[data]>=2.40; extra == "ray"' in meta
    assert "Requires-Dist: trl==1.16.0; extra == \"train\"" in meta

    python = _venv_beside_project(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    videos = work / "videos"
    videos.mkdir(parents=True)
    write_synthetic_video(videos / "one.mp4", [1.5, 2.0, 1.5], 25.0, size=(128, 72), seed=3)
    write_synthetic_video(videos / "two.mp4", [2.0, 1.5], 24.0, size=(128, 72), seed=4)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)

    where = run("-c", "import scenetg; print(scenetg.__file__)")
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where
    scenetg = str(tmp_path / "venv" / "bin" / "scenetg")
    built = subprocess.run(
        [scenetg, "build", "--videos", "videos", "--out", "out", "--caption-model", str(tiny_models["qwen"]),
         "--clip-model", str(tiny_models["clip"])], cwd=work, env=env, capture_output=True, text=True,
        timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    card = (work / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "temporal grounding" in card
    assert list((work / "out" / "audit").glob("queries-*.parquet"))
    demo = subprocess.run([scenetg, "demo", "--out", "demo"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800)  # a hang guard: ~1.5 min alone, far more on a busy machine
    assert demo.returncode == 0, demo.stderr[-3000:]
    import pyarrow.parquet as pq

    ids = {r["video_id"] for r in pq.read_table(work / "demo" / "dataset" / "videos.parquet").to_pylist()}
    assert ids == {"synthetic/kitchen_25fps", "synthetic/street_29.97fps", "synthetic/garden vfr ü"}
    # the toy leg ran from the installed wheel: its shipped checkpoint, toy videos and report
    assert (work / "demo" / "toy" / "sft_start" / "provenance.json").is_file()
    assert "| toy_heldout | sft_start |" in (work / "demo" / "toy" / "eval" / "report.md").read_text()


def test_package_data_is_declared_and_present():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["scenetg"]
    for pattern in data:
        assert list(PACKAGE.glob(pattern)), pattern
    assert (PACKAGE / "py.typed").is_file()
    # data_cards/ is where people look for the template: it is the packaged file itself.
    assert (ROOT / "data_cards" / "scenetg_dataset_card.md").resolve() == (
        PACKAGE / "curate" / "dataset" / "templates" / "scenetg_dataset_card.md")
