"""experiments/dynamics.py on hand-written logs: SWD change, the discriminator's windowed loss, the
picture, and a clear error for a folder without the logs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "dynamics.py"
spec = importlib.util.spec_from_file_location("dynamics", SCRIPT)
dynamics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dynamics)


def write_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "swd.csv").write_text("step,AtoB_translated,AtoB_untranslated,BtoA_translated,BtoA_untranslated\n"
                                    "100,1,1,80,100\n200,1,1,100,100\n")
    rows = ["step,lr,G,D_A"] + [f"{s},0.1,1,{0.5 if s <= 100 else 0.1}" for s in range(1, 251)]
    (folder / "losses.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_dynamics_of_a_run_that_moved_and_went_back(tmp_path, capsys):
    run = dynamics.run_dynamics(write_run(tmp_path / "cyclegan"))
    assert run["swd_steps"] == [100, 200] and [round(c, 3) for c in run["swd_change"]] == [-0.2, 0.0]
    assert run["d_steps"] == [100, 200] and [round(v, 3) for v in run["d_loss"]] == [0.5, 0.1]  # 2 whole windows
    out = tmp_path / "dynamics.png"
    assert dynamics.main([f"a run={tmp_path / 'cyclegan'}", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert dynamics.main([f"empty={tmp_path}", "--out", str(out)]) == 2
    assert "'empty=" in capsys.readouterr().err
