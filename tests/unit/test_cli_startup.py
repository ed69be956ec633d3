"""Start-up stays light: each entry point loads only the libraries its work needs.

Checked in fresh processes through ``sys.modules`` (never by timing): the command line's parser
loads no data, model or storage library; listing runs needs the registry's database but no
model code; a table-based train run loads no imaging library; the dashboard's first page (the
router and the Data page) loads no model, imaging or scientific library.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medimg_core import cli
from medimg_core.imaging.feature_table import is_image_source
from medimg_core.modelling import batch
from medimg_core.store import audit

ROOT = Path(__file__).resolve().parents[2]
MODEL_CODE = {"sklearn", "scipy", "skops", "shap", "crepes"}
IMAGING = {"pydicom", "skimage", "PIL"}
CLUSTER = {"dask", "distributed"}
FIGURES = {"plotly", "kaleido", "fpdf"}
STORAGE = {"sqlalchemy", "pyarrow", "argon2", "cryptography"}
DATA = {"numpy", "pandas"}


def loaded_after(code: str, home: Path) -> set[str]:
    """Top-level names of the modules loaded after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\nprint('LOADED:', *sorted({{m.split('.')[0] for m in sys.modules}}))"
    )
    env = {**os.environ, "MEDIMG_HOME": str(home)}
    for name in ("MEDIMG_USER", "MEDIMG_DATABASE_URL", "MEDIMG_SCHEDULER"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("LOADED:")][-1]
    return set(line.split()[1:])


def test_importing_the_cli_and_building_its_parser_loads_no_heavy_library(tmp_path: Path) -> None:
    modules = loaded_after("import medimg_core.cli as c; c.build_parser()", tmp_path)
    assert not modules & (MODEL_CODE | IMAGING | CLUSTER | FIGURES | STORAGE | DATA)


def test_help_loads_no_heavy_library(tmp_path: Path) -> None:
    code = "import medimg_core.cli as c; assert c.main(['--help']) == 0"
    modules = loaded_after(code, tmp_path)
    assert not modules & (MODEL_CODE | IMAGING | CLUSTER | FIGURES | STORAGE | DATA)


def test_listing_runs_loads_the_registry_but_no_model_or_imaging_code(tmp_path: Path) -> None:
    modules = loaded_after("import medimg_core.cli as c; assert c.main(['runs']) == 0", tmp_path)
    assert "sqlalchemy" in modules  # the registry was read
    assert not modules & (MODEL_CODE | IMAGING | CLUSTER)


def test_training_on_a_table_loads_no_imaging_library(tmp_path: Path) -> None:
    out = tmp_path / "model"
    code = (
        "import medimg_core.cli as c; assert c.main(['train', 'sample:wdbc', '--model', "
        f"'logreg', '--cv', '2', '--n-boot', '20', '-o', {str(out)!r}]) == 0"
    )
    modules = loaded_after(code, tmp_path)
    assert {"sklearn", "skops", "sqlalchemy"} <= modules  # it trained, saved and recorded
    assert not modules & ({"pydicom", "skimage", "shap"} | FIGURES - {"plotly"})


def test_the_dashboards_first_page_loads_no_model_or_imaging_code(tmp_path: Path) -> None:
    """What ``app.py`` and the Data page import before any data is loaded."""
    imports = []
    for page in (ROOT / "app.py", ROOT / "pages" / "data.py"):
        tree = ast.parse(page.read_text(encoding="utf-8"))
        imports += [
            ast.unparse(node)
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            and getattr(node, "module", None) != "__future__"
        ]
    assert any("medimg_core.ui" in line for line in imports)
    modules = loaded_after("\n".join(imports), tmp_path)
    # Pillow is not on the list: Streamlit loads it itself (st.image).
    assert not modules & (MODEL_CODE | IMAGING - {"PIL"} | CLUSTER | {"sqlalchemy"})


def test_the_parsers_copies_of_core_constants_match_the_core() -> None:
    assert cli.ACTIONS is audit.ACTIONS
    assert cli._PREDICTION_FORMATS == batch.FORMATS
    assert cli._PARTITION_ROWS == batch.PARTITION_ROWS


@pytest.mark.parametrize(
    "name",
    ["sample:wdbc", "table.csv", "table.TSV", "sheet.xlsx", "cases.parquet", "folder.csv",
     "images.zip", "images.npz", "scan.png", "scan.dcm", "noending", "missing.csv"],
)  # fmt: skip
def test_the_light_image_check_agrees_with_the_imaging_one(tmp_path: Path, name: str) -> None:
    if name == "folder.csv":
        (tmp_path / name).mkdir()  # a folder is an image study, whatever its name
    elif name != "missing.csv" and not name.startswith("sample:"):
        (tmp_path / name).write_bytes(b"not really")
    spec = name if name.startswith("sample:") else str(tmp_path / name)
    assert cli._is_image_source(spec) == is_image_source(spec)
