"""Eight workers run the real trial loop on one study at once, on SQLite and on PostgreSQL; nothing is lost.

The trials are `search.synthetic`'s (a made-up learning curve, no TensorFlow), so the storage
and the loop are all that is tested: the forked trial process, ask, heartbeats, per-epoch
reports, the pruner, the surplus guard and tell. bench/storage_load.py measures the same at
1 to 32 workers. PostgreSQL is the throw-away cluster of conftest.postgres_server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_synthetic_workers

from search import synthetic
from search.storage import open_storage
from search.trials import FINISHED

sys.path.insert(0, str(REPO / "bench"))  # the checks bench/storage_load.py applies, shared
from load_checks import end_state_problems, storage_errors

WORKERS, TRIALS = 8, 24
LIMIT = 300  # seconds: generous for a loaded 2-core machine; the run takes a fraction of it


def _check_workers_leave_an_exact_study(url: str, study: str, folder: Path) -> None:
    synthetic.create_study(url, study, n_trials=TRIALS, heartbeat=2)
    logs = run_synthetic_workers(url, study, WORKERS, folder, "--timeout", "240")
    output = "".join(log.read_text() for log in logs)
    assert storage_errors(logs) == {}, output[-5000:]
    trials = optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)
    assert end_state_problems(trials, TRIALS, synthetic.EPOCHS) == []
    workers_seen = {t.user_attrs["worker"] for t in trials if t.state in FINISHED}
    assert len(workers_seen) >= 2, "the trials were not shared between workers"
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials), "the pruner never acted"


def test_eight_workers_finish_exactly_the_trials_asked_for(storage_url: str, tmp_path: Path) -> None:
    _check_workers_leave_an_exact_study(storage_url, "eight", tmp_path)


def test_the_made_up_curve_rises_and_sets_poor_params_apart() -> None:
    good = [synthetic.curve(3e-3, 256, epoch) for epoch in range(1, synthetic.EPOCHS + 1)]
    poor = [synthetic.curve(1e-4, 16, epoch) for epoch in range(1, synthetic.EPOCHS + 1)]
    assert good == sorted(good) and 0.9 < good[-1] < 1
    assert all(p < g for p, g in zip(poor, good, strict=True))


@pytest.mark.parametrize("module", ["search.synthetic", "search.trials"])
def test_the_loop_and_the_synthetic_trial_do_not_import_tensorflow(module: str) -> None:
    probe = f"import sys, {module}; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
