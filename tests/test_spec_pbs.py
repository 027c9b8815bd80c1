"""PBS parsers: PBS Pro/OpenPBS JSON (documented format, tests/data/pbspro), Torque XML
(documented format, tests/data/torque/qstat_x_t_array.xml) and the slurm-wlm-torque shim
(real captures, tests/data/torque)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from torque_shim import TorqueSlurmShimSpec

from hpcpar.backends.pbs import PbsProSpec, PbsSpec, TorqueSpec, detect_dialect
from hpcpar.backends.spec import Submission
from hpcpar.config import Options
from hpcpar.errors import ConfigError
from hpcpar.states import JobState as S

DATA = Path(__file__).parent / "data"
pro, torque, shim = PbsProSpec(), TorqueSpec(), TorqueSlurmShimSpec()


def read(name: str) -> str:
    return (DATA / name).read_text()


def states(parsed):
    return {k: v.state for k, v in parsed.items()}


def test_detect_dialect():
    assert detect_dialect("pbs_version = 2022.1.3\n", 0, False) == ("pro", False)
    assert detect_dialect("Version: 6.1.3\nCommit: abc\n", 0, False) == ("torque", False)
    usage = read("torque/qstat_x.stderr")             # the shim's answer to an unknown option
    assert "Unknown option" in usage
    assert detect_dialect("Unknown option: version\n" + usage, 2, True) == ("torque", True)
    assert detect_dialect("Unknown option: version\n", 2, False) == ("pro", False)


def test_parse_job_id_all_forms():
    assert pro.parse_job_id(read("pbspro/qsub_plain.stdout")) == "1234.pbsserver"
    assert pro.parse_job_id(read("pbspro/qsub_array.stdout")) == "1235[].pbsserver"
    assert torque.parse_job_id(read("torque/qsub_array_torque.stdout")) == "747[].torque"
    assert shim.parse_job_id(read("torque/qsub_array.stdout")) == read("torque/qsub_array.stdout").strip()
    with pytest.raises(ValueError):
        shim.parse_job_id(read("torque/qsub_bad_queue.stdout"))
    assert pro.task_id("1235[].pbsserver", 4) == "1235[4].pbsserver"
    assert pro.task_id("1234.pbsserver", 0) == "1234.pbsserver"
    assert shim.task_id("747", 3) == "747_3"


def test_parse_submit_gives_every_chunk_its_task_id():
    array = Submission(("qsub", "-J", "0-2"), (0, 1, 2))
    assert pro.parse_submit(read("pbspro/qsub_array.stdout"), array) == {
        0: "1235[0].pbsserver", 1: "1235[1].pbsserver", 2: "1235[2].pbsserver"}
    plain = Submission(("qsub", "-v", "HPCPAR_ARRAY_INDEX=6"), (6,))
    assert pro.parse_submit(read("pbspro/qsub_plain.stdout"), plain) == {6: "1234.pbsserver"}
    assert pro.job_id_of("1235[2].pbsserver") == "1235[].pbsserver"
    assert pro.job_id_of("1234.pbsserver") == "1234.pbsserver"
    assert torque.job_id_of("747[3].torque") == "747[].torque" and shim.job_id_of("747_3") == "747"


def test_one_pbs_spec_narrows_to_its_dialect_without_running_anything():
    spec = PbsSpec()
    assert spec.detect_argv(Options(dialect="pro")) is None          # no qstat for a dry run
    assert spec.detect_argv(Options()) == ["qstat", "--version"]
    assert type(spec.variant(Options(dialect="openpbs"), None)) is PbsProSpec
    assert type(spec.variant(Options(dialect="torque"), None)) is TorqueSpec
    assert type(spec.variant(Options(), None)) is PbsProSpec          # no qstat on PATH
    assert type(spec.variant(Options(), ("Version: 6.1.3\n", 0))) is TorqueSpec
    assert spec.variant(Options(dialect="torque"), None).template_context(None, None) == {"dialect": "torque"}
    with pytest.raises(ConfigError, match="dialect='slurm' is not a valid PBS dialect"):
        spec.check_options(Options(dialect="slurm"))


def test_submissions_per_dialect():
    subs = pro.submissions("/r/job.sh", [0, 1, 2, 6], max_running=2, max_array_size=None)
    assert [s.argv for s in subs] == [("qsub", "-J", "0-2%2", "/r/job.sh"),
                                      ("qsub", "-v", "HPCPAR_ARRAY_INDEX=6", "/r/job.sh")]
    assert [s.indices for s in subs] == [(0, 1, 2), (6,)]
    (t,) = torque.submissions("/r/job.sh", [0, 1, 2, 6], max_running=2, max_array_size=None)
    assert t.argv == ("qsub", "-t", "0-2,6-6%2", "/r/job.sh") and t.indices == (0, 1, 2, 6)
    (s,) = shim.submissions("/r/job.sh", [3], None, None)
    assert s.argv == ("qsub", "-t", "3-3", "-o", "/r/logs/%A_%a.out", "-e", "/r/logs/%A_%a.err", "/r/job.sh")
    assert shim.status_argv(["747"])[0] == "squeue" and shim.cancel_argv(["747_3"]) == ["scancel", "747_3"]
    assert pro.status_argv(["1235[].pbsserver"]) == ["qstat", "-f", "-F", "json", "-x", "-t", "1235[].pbsserver"]


def test_pro_json_array_mixed_and_finished():
    assert states(pro.parse_status(read("pbspro/qstat_f_F_json_x_t_array_mixed.json"))) == {
        "1235[0].pbsserver": S.COMPLETED, "1235[1].pbsserver": S.FAILED, "1235[2].pbsserver": S.RUNNING,
        "1235[3].pbsserver": S.RUNNING, "1235[4].pbsserver": S.PENDING, "1235[5].pbsserver": S.PENDING}
    fin = pro.parse_status(read("pbspro/qstat_f_F_json_x_t_array_finished.json"))
    assert [(fin[f"1235[{i}].pbsserver"].state, fin[f"1235[{i}].pbsserver"].exit_code) for i in range(6)] == [
        (S.COMPLETED, 0), (S.FAILED, 3), (S.COMPLETED, 0), (S.CANCELLED, 143), (S.TIMEOUT, -29), (S.COMPLETED, 0)]
    assert pro.parse_status(read("pbspro/qstat_f_F_json_x_array_parent_only.json")) == {}
    assert pro.parse_status(read("pbspro/qstat_f_F_json_x_no_jobs.json")) == {}


def test_pro_json_finished_plain_jobs_every_exit_class():
    got = states(pro.parse_status(read("pbspro/qstat_f_F_json_x_finished_jobs.json")))
    assert got == {"1300.pbsserver": S.COMPLETED, "1301.pbsserver": S.FAILED,
                   "1302.pbsserver": S.CANCELLED,      # 271 = SIGTERM from qdel
                   "1303.pbsserver": S.CANCELLED,      # deleted while queued: no Exit_status
                   "1304.pbsserver": S.TIMEOUT,        # -29 JOB_EXEC_KILL_WALLTIME
                   "1305.pbsserver": S.TIMEOUT,        # 271 with walltime used >= limit (older servers)
                   "1306.pbsserver": S.OUT_OF_MEMORY,  # -27 JOB_EXEC_KILL_MEM
                   "1307.pbsserver": S.FAILED,         # 139: SIGSEGV inside the script
                   "1308.pbsserver": S.FAILED}         # -1 JOB_EXEC_FAIL1
    active = states(pro.parse_status(read("pbspro/qstat_f_F_json_x_active_jobs.json")))
    assert active == {"1400.pbsserver": S.RUNNING, "1401.pbsserver": S.PENDING, "1402.pbsserver": S.PENDING}
    assert pro.status_failed_means_gone(read("pbspro/qstat_unknown_job.stderr"))
    assert not pro.status_failed_means_gone(read("pbspro/qstat_finished_without_x.stderr"))


def _pro_json(state: str, exit_status=None) -> str:
    attrs = {"job_state": state, "substate": 42}
    if exit_status is not None:
        attrs["Exit_status"] = exit_status
    return json.dumps({"timestamp": 1, "pbs_version": "23.06.06", "pbs_server": "s",
                       "Jobs": {"9[1].s": attrs}})


@pytest.mark.parametrize("native", sorted(PbsProSpec.STATES))
def test_pro_every_job_state(native):
    got = pro.parse_status(_pro_json(native))["9[1].s"]
    # F and X without Exit_status: deleted before it ran
    assert got.state is (S.CANCELLED if native in "FX" else PbsProSpec.STATES[native])


@pytest.mark.parametrize("code", sorted(PbsProSpec.EXEC_CODES))
def test_pro_every_exec_code(code):
    assert pro.parse_status(_pro_json("F", code))["9[1].s"].state is PbsProSpec.EXEC_CODES[code]


def test_torque_xml_every_state_and_exit_class():
    got = torque.parse_status(read("torque/qstat_x_t_array.xml"))
    assert {k: (v.state, v.exit_code) for k, v in got.items()} == {
        "747[0].torque": (S.COMPLETED, 0), "747[1].torque": (S.FAILED, 3),
        "747[2].torque": (S.CANCELLED, 143), "747[3].torque": (S.TIMEOUT, -11),
        "747[4].torque": (S.OUT_OF_MEMORY, -10), "747[5].torque": (S.CANCELLED, None),
        "747[6].torque": (S.RUNNING, None), "747[7].torque": (S.RUNNING, None),
        "747[8].torque": (S.PENDING, None), "747[9].torque": (S.PENDING, None),
        "747[10].torque": (S.PENDING, None), "747[11].torque": (S.PENDING, None),
        "747[12].torque": (S.RUNNING, None)}
    assert {v.native[0] for v in got.values()} == set(TorqueSpec.STATES)    # every letter covered


@pytest.mark.parametrize("code", sorted(TorqueSpec.EXEC_CODES))
def test_torque_every_exec_code(code):
    xml = f"<Data><Job><Job_Id>5[0].t</Job_Id><job_state>C</job_state><exit_status>{code}</exit_status></Job></Data>"
    assert torque.parse_status(xml)["5[0].t"].state is TorqueSpec.EXEC_CODES[code]


def test_shim_status_is_squeue(tmp_path):
    text = "\n".join(line.rsplit("|", 1)[0]            # recorded with %i|%T|%r; hpcpar asks %i|%T
                     for line in read("slurm/squeue_array_running_compact.txt").splitlines())
    got = states(shim.parse_status(text))
    assert got["730_0"] is S.RUNNING and got["730_9"] is S.PENDING and got["731_6"] is S.PENDING


def test_unknown_states_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcpar"):
        assert pro.parse_status(_pro_json("Z"))["9[1].s"].state is S.UNKNOWN
        assert pro.parse_status(_pro_json("F", -99))["9[1].s"].state is S.UNKNOWN
        xml = "<Data><Job><Job_Id>5[0].t</Job_Id><job_state>Z</job_state></Job></Data>"
        assert torque.parse_status(xml)["5[0].t"].state is S.UNKNOWN
    assert "unknown native job state 'Z'" in caplog.text and "unknown negative Exit_status -99" in caplog.text


# -- pending reasons: the comment attribute (pbs_job_attributes(7B)), else the state letter --------
def test_pro_pending_reason_is_the_comment():
    got = pro.parse_status(read("pbspro/qstat_f_F_json_x_active_jobs.json"))
    assert got["1401.pbsserver"].reason.startswith("Not Running: Insufficient amount of resource")
    assert not got["1401.pbsserver"].blocked
    assert got["1402.pbsserver"].reason == "held"                 # H, no comment
    assert got["1400.pbsserver"].reason == ""                     # running: no reason
    queued = pro.parse_status(read("pbspro/qstat_f_F_json_x_t_array_queued.json"))
    assert {s.reason for s in queued.values()} == {
        "Not Running: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)"}   # the parent's


def test_pro_can_never_run_is_blocking():
    doc = {"Jobs": {"7.srv": {"job_state": "Q", "comment":
                              "Can Never Run: Insufficient amount of resource: ncpus (R: 64 A: 2 T: 2)"}}}
    got = pro.parse_status(json.dumps(doc))["7.srv"]
    assert got.blocked and got.reason.startswith("Can Never Run")


def test_torque_pending_reason_from_the_state_letter():
    got = torque.parse_status(read("torque/qstat_x_t_array.xml"))
    assert got["747[9].torque"].reason == "held" and got["747[10].torque"].reason.startswith("waiting")
    assert got["747[8].torque"].reason == "" and got["747[6].torque"].reason == ""
