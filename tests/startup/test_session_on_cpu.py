"""One live run per run directory: a second one is refused, a killed one leaves no stale lock,
and a directory that holds a run is not silently appended to."""

import subprocess
import sys

import pytest

from rlhf.recipes import dapo
from rlhf.startup.session import RunDirError, run_dir_lock

HOLD = "import sys, time; from pathlib import Path; from rlhf.startup.session import run_dir_lock\n" \
       "Path(sys.argv[1]).mkdir(exist_ok=True)\nwith run_dir_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)\n"


def test_a_second_live_run_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by a live run \(pid {holder.pid}\)"):
            with run_dir_lock(tmp_path):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    with run_dir_lock(tmp_path):  # the OS released the dead run's lock
        pass


def test_a_run_directory_that_holds_a_run_is_not_appended_to(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(SystemExit) as e:
        dapo.main([f"run.output_dir={tmp_path}", "run.name=r", "warmstart.steps=0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "choose a new run.name" in err
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_two_runs_started_together_on_one_directory(tmp_path):
    """The second of two runs on one name exits with code 2 while the first holds the directory."""
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", f"run.output_dir={tmp_path}", "run.name=same",
           "warmstart.steps=0", "run.steps=1", "run.eval_every=0", "data.num_eval=8", "rollout.prompts_per_step=2",
           "rollout.gen_prompts=2", "rollout.n=2", "rollout.max_new_tokens=12", "run.progress=false"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "same")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2 and "in use by a live run" in second.stderr
    assert not (tmp_path / "same" / "metrics.jsonl").exists()
