"""SlurmSpec parsers against real SLURM 22.05 output (tests/data/slurm, captured on the single host)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpcpar.backends.slurm import SlurmSpec
from hpcpar.backends.spec import QueueInfo
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


# -- pending reasons (squeue %r) and the queue's nodes (sinfo %D %c %m) -------------------------
def test_squeue_recorded_pending_reasons():
    got = spec.parse_status(read("squeue_pending_reasons.txt"))
    assert (got["5239_1"].state, got["5239_1"].reason) == (S.PENDING, "BeginTime")
    assert got["5241"].reason == "JobHeldUser" and not got["5241"].blocked
    assert got["5243"].reason == "DependencyNeverSatisfied" and got["5243"].blocked
    assert (got["5242"].state, got["5242"].blocked) == (S.FAILED, False)   # final: not blocked
    compact = spec.parse_status(read("squeue_pending_begin_compact.txt"))
    assert {t: s.reason for t, s in compact.items()} == {f"5239_{i}": "BeginTime" for i in range(3)}
    running = spec.parse_status(read("squeue_array_running_compact.txt"))
    assert running["730_0"].reason == ""                # SLURM's "None"
    assert running["730_2"].reason == "JobArrayTaskLimit" and not running["730_2"].blocked
    limit = spec.parse_status(read("squeue_time_over_partition_max_no_enforce.txt"))["760"]
    assert (limit.reason, limit.blocked) == ("PartitionTimeLimit", True)


@pytest.mark.parametrize("reason,blocked", [
    ("PartitionConfig", True), ("InvalidAccount", True), ("InvalidQOS", True),
    ("BadConstraints", True), ("Resources", False), ("Priority", False), ("BeginTime", False),
    ("QOSMaxJobsPerUserLimit", False), ("ReqNodeNotAvail, UnavailableNodes:vm", False)])
def test_blocking_reasons(reason, blocked):
    assert spec.parse_status(f"5_1|PENDING|{reason}\n")["5_1"].blocked is blocked


def test_sinfo_recorded_nodes_cpus_mem():
    info = spec.parse_queue(read("sinfo_P_C_l_D_c_m.txt"), None)
    assert info == QueueInfo("debug", 2, 3600, 1, 2, 24105 * 2**20)
    assert spec.parse_queue(read("sinfo_P_C_l_D_c_m.txt"), "short").max_walltime_s == 300


def test_sinfo_nodes_of_two_configurations():
    out = "big|0/96/0/96|infinite|2|32|128000\nbig|0/64/0/64|infinite|1|64+|256000\n"
    info = spec.parse_queue(out, "big")
    assert (info.total_cpus, info.nodes, info.cpus_per_node, info.mem_per_node) == (
        160, 3, None, 256000 * 2**20)
