"""The train command: a short run end to end, the progress bar, checkpoints and resuming, bad arguments."""
import subprocess
import sys

import numpy as np
import pytest

import nblstm
from nblstm.cli import main

QUICK = ["train", "adding", "--length", "10", "--hidden-size", "8", "--batch-size", "8", "--no-progress"]


def test_train_adding_short_run_reports_criterion(capsys):
    code = main(QUICK + ["--steps", "30"])
    out = capsys.readouterr().out
    assert code == 1                                        # 30 steps cannot meet the criterion
    assert "trained steps 0..30" in out and "training criterion: not met" in out
    assert "of 2560 fresh test sequences wrong" in out and "NOT SOLVED" in out


def test_train_solves_adding_t10_and_exits_0(capsys):
    code = main(["train", "adding", "--length", "10", "--steps", "3000", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "training criterion: MET at step" in out and "SOLVED" in out


def test_progress_bar_shows_running_loss(capsys):
    main(["train", "adding", "--length", "10", "--hidden-size", "8", "--batch-size", "8", "--steps", "20"])
    err = capsys.readouterr().err
    assert "adding" in err and "loss=" in err and "20/20" in err


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    main(QUICK + ["--steps", "40", "--checkpoint", str(a), "--no-early-stop"])
    main(QUICK + ["--steps", "20", "--checkpoint", str(b), "--checkpoint-every", "5", "--no-early-stop"])
    assert nblstm.io.read(b)["metadata"]["step"] == 20
    main(QUICK + ["--steps", "40", "--checkpoint", str(b), "--resume", "--no-early-stop"])
    assert "resumed from" in capsys.readouterr().out
    ma, mb = nblstm.io.read(a)["models"]["model"], nblstm.io.read(b)["models"]["model"]
    assert all(np.array_equal(ma[k], mb[k]) for k in ma)
    assert nblstm.io.read(b)["metadata"]["step"] == 40


def test_resume_refuses_another_configuration_and_bad_files(tmp_path, capsys):
    path = tmp_path / "ck.npz"
    main(QUICK + ["--steps", "5", "--checkpoint", str(path)])
    capsys.readouterr()
    assert main(QUICK + ["--steps", "10", "--checkpoint", str(path), "--resume", "--hidden-size", "9"]) == 2
    assert "hidden_size (saved 8, now 9)" in capsys.readouterr().err
    good = path.read_bytes()
    path.write_bytes(good[:len(good) // 2])
    assert main(QUICK + ["--steps", "10", "--checkpoint", str(path), "--resume"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(QUICK + ["--steps", "10", "--resume"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err


def test_resume_without_a_checkpoint_starts_fresh(tmp_path, capsys):
    path = tmp_path / "new.npz"
    main(QUICK + ["--steps", "5", "--checkpoint", str(path), "--resume"])
    assert "starting at step 0" in capsys.readouterr().out and path.exists()


def test_layers_and_device_errors(capsys, tmp_path):
    path = tmp_path / "two.npz"
    assert main(QUICK + ["--steps", "5", "--layers", "2", "--checkpoint", str(path)]) == 1     # runs, unsolved
    assert "LSTM(2, 8, num_layers=2" in capsys.readouterr().out
    assert "core.weight_ih_l1" in nblstm.io.read(path)["models"]["model"]
    assert main(QUICK + ["--steps", "5", "--layers", "0"]) == 2
    assert "num_layers: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(QUICK + ["--steps", "5", "--layers", "2", "--model", "rnn"]) == 1     # a stacked RNN core runs
    assert "RNN(2, 8, num_layers=2)" in capsys.readouterr().out
    assert main(QUICK + ["--steps", "5", "--device", "tpu"]) == 2
    assert "device" in capsys.readouterr().err


@pytest.mark.parametrize("task,extra", [("temporal-order", []), ("reber", []),
                                        ("charlm", ["--hidden-size", "16", "--batch-size", "4"])])
def test_other_tasks_run(task, extra, capsys):
    code = main(["train", task, "--steps", "3", "--no-progress"] + extra)
    out = capsys.readouterr().out
    assert code in (0, 1) and "held-out:" in out


def test_digits_task(capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "digits", "--steps", "150", "--hidden-size", "32", "--no-progress"]) in (0, 1)
    out = capsys.readouterr().out
    acc = float(out.split("held-out: test accuracy ")[1].split("%")[0])
    assert acc > 70                                       # 10 classes: chance is 10 %


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "nblstm", "train", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--hidden-size" in r.stdout and "--resume" in r.stdout


def test_train_with_the_vanilla_rnn_core(capsys):
    code = main(QUICK + ["--steps", "20", "--model", "rnn"])
    out = capsys.readouterr().out
    assert code == 1 and "core=RNN(2, 8)" in out and "trained steps 0..20" in out


def test_gradcheck_command_every_option(capsys):
    """gradcheck of a 2-layer bidirectional peephole LSTMP with lengths: a table row per tensor, PASS, exit 0."""
    code = main(["gradcheck", "--layers", "2", "--bidirectional", "--proj-size", "2", "--peephole", "--lengths",
                 "--batch", "3", "--steps", "4"])
    out = capsys.readouterr().out
    assert code == 0 and "PASS: max relative error" in out and "lengths [4, " in out
    rows = dict(line.split()[:2] for line in out.splitlines()[2:-1])
    assert set(rows) >= {"x", "h0", "c0", "weight_hr_l1_reverse", "weight_co_l0"}
    assert max(float(v) for v in rows.values()) < 1e-6


def test_gradcheck_command_bad_configuration(capsys):
    assert main(["gradcheck", "--proj-size", "4"]) == 2
    assert "proj_size: expected an integer in 0..hidden_size - 1 = 3" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--model", "rnn"], ["--layers", "2"]])
def test_train_dates_refuses_core_options_it_cannot_use(capsys, extra):
    """dates trains a Seq2Seq whose encoder is fixed: --model / --layers would be ignored, so they are refused."""
    assert main(["train", "dates", "--steps", "1", "--no-progress"] + extra) == 2
    assert "train: dates: --model" in capsys.readouterr().err
