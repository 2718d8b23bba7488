"""The claims runner's summary table (benchmarks/toy_claims): one row per comparison a regime
reports, linked to the regime's doc; an unknown regime is a usage error."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from toy_claims.__main__ import main  # noqa: E402
from toy_claims.summary import summary_table, write_summary  # noqa: E402

RESULTS = [
    {"regime": "sparse_events", "claim": "CenDist helps sparse events",
     "readme_rows": [{"comparison": "IoU+CenDist vs IoU only", "metric": "R1@0.5", "a": 0.10,
                      "b": 0.20, "paired": "+30 / −10, p=0.002", "shows": "yes"}]},
    {"regime": "ambiguous", "claim": "filtering helps",
     "readme_rows": [{"comparison": "filtered vs unfiltered", "metric": "mIoU", "a": 0.4, "b": 0.4,
                      "paired": "+5 / −5, p=1", "shows": "no"},
                     {"comparison": "x", "metric": "R1@0.7", "a": 1, "b": 2, "shows": "mixed"}]},
]


def test_summary_table_has_a_linked_row_per_comparison(tmp_path):
    table = summary_table(RESULTS).splitlines()
    assert table[0] == "| claim | comparison | metric | a | b | paired | shows |"
    assert len(table) == 2 + 3
    assert table[2] == ("| [CenDist helps sparse events](sparse_events.md) | IoU+CenDist vs IoU only | "
                        "R1@0.5 | 0.1 | 0.2 | +30 / −10, p=0.002 | yes |")
    assert table[4].startswith("| [filtering helps](ambiguous.md) | x | R1@0.7 | 1 | 2 |  | mixed |")
    path = write_summary(RESULTS, tmp_path / "claims.md")
    assert summary_table(RESULTS) in path.read_text()


def test_unknown_regime_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["nonsense"])
    assert err.value.code == 2
    assert "unknown regime nonsense" in capsys.readouterr().err
