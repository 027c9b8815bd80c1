"""SlurmSpec parsers against real SLURM 22.05 output (tests/data/slurm, captured on the single host)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpcpar.backends.slurm import SlurmSpec
from hpcpar.states import JobState as S

DATA = Path(__file__).parent / "data" / "slurm"
spec = SlurmSpec()


def read(name: str) -> str:
    return (DATA / name).read_text()


def two_columns(text: str) -> str:
    """The captures used ``%i|%T|%r``; hpcpar asks for ``%i|%T`` (drop the reason column)."""
    return "\n".join(line.rsplit("|", 1)[0] for line in text.splitlines())


def test_parse_job_id():
    assert spec.parse_job_id(read("sbatch_parsable.stdout")) == "723"
    assert spec.parse_job_id("724;cluster\n") == "724"
    with pytest.raises(ValueError):
        spec.parse_job_id(read("sbatch_plain.stdout"))


def test_squeue_recorded_finished_and_arrays():
    fin = spec.parse_status(two_columns(read("squeue_finished_states.txt")))
    assert {k: v.state for k, v in fin.items()} == {
        "727": S.CANCELLED, "729": S.CANCELLED, "725": S.COMPLETED, "726": S.FAILED,
        "728": S.OUT_OF_MEMORY, "718": S.TIMEOUT, "719": S.TIMEOUT}
    compact = spec.parse_status(two_columns(read("squeue_array_running_compact.txt")))
    assert {f"730_{i}" for i in range(10)} <= set(compact)
    assert {f"731_{i}" for i in (1, 3, 5, 6, 7)} <= set(compact)
    expanded = spec.parse_status(two_columns(read("squeue_array_running_expanded.txt")))
    assert expanded["730_2"].state is S.PENDING
    assert spec.status_failed_means_gone(read("squeue_unknown_id.stderr"))


def test_config_probe():
    assert spec.parse_config(read("scontrol_show_config.txt")) == {"max_array_size": 1001, "accounting": False}


@pytest.mark.parametrize("native", sorted(SlurmSpec.STATES))
def test_every_state_in_squeue_and_sacct(native):
    assert spec.parse_status(f"5_1|{native}\n")["5_1"].state is SlurmSpec.STATES[native]
    got = spec.parse_final_status(f"5_1|{native} by 0|0:15\n")["5_1"]
    assert (got.state, got.exit_code) == (SlurmSpec.STATES[native], 143)


def test_unknown_state_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcpar"):
        assert spec.parse_status("5_1|NEW_STATE\n")["5_1"].state is S.UNKNOWN
    assert "unknown native job state 'NEW_STATE'" in caplog.text
