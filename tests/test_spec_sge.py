"""SgeSpec parsers against real Grid Engine 8.1.9 output (tests/data/sge, captured in docker/sge)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpcpar.backends.sge import SgeSpec, _expand_tasks
from hpcpar.states import JobState as S

DATA = Path(__file__).parent / "data" / "sge"
spec = SgeSpec()


def read(name: str) -> str:
    return (DATA / name).read_text()


def states(parsed):
    return {k: v.state for k, v in parsed.items()}


def test_parse_job_id_terse():
    assert spec.parse_job_id(read("qsub_terse_plain.out")) == "1"
    assert spec.parse_job_id(read("qsub_terse_array.out")) == "3"       # "3.1-4:1"
    with pytest.raises(ValueError):
        spec.parse_job_id(read("qsub_plain_noterse.out"))


def test_submissions_split_index_sets_into_ranges_1_based():
    subs = spec.submissions("/r/job.sh", [0, 1, 2, 5, 7, 8], max_running=2, max_array_size=None)
    assert [s.argv for s in subs] == [
        ("qsub", "-terse", "-t", "1-3", "-tc", "2", "/r/job.sh"),
        ("qsub", "-terse", "-t", "6-6", "-tc", "2", "/r/job.sh"),
        ("qsub", "-terse", "-t", "8-9", "-tc", "2", "/r/job.sh"),
    ]
    assert [s.indices for s in subs] == [(0, 1, 2), (5,), (7, 8)]
    assert all(s.offset == 0 and s.stdin is None for s in subs)
    big = spec.submissions("/r/job.sh", range(10), None, max_array_size=4)
    assert [s.argv[3] for s in big] == ["1-4", "5-8", "9-10"]
    assert spec.task_id("12", 3) == "12.3"
    assert spec.cancel_argv(["12.3", "13.1"]) == ["qdel", "12.3", "13.1"]


def test_qstat_xml_array_running_and_pending_ranges():
    got = states(spec.parse_status(read("qstat_xml_array_pending_running.xml")))
    assert got == {"3.1": S.RUNNING, "3.2": S.RUNNING, "3.3": S.PENDING, "3.4": S.PENDING,
                   "4.1": S.PENDING, "4.3": S.PENDING, "4.5": S.PENDING}


def test_qstat_xml_held_transferring_error_and_empty():
    got = spec.parse_status(read("qstat_xml_before_qdel.xml"))
    assert (got["18"].state, got["20.1"].native, got["19"].native) == (S.RUNNING, "t", "hqw")
    assert states(spec.parse_status(read("qstat_xml_eqw_pe4.xml")))["29"] == S.FAILED
    assert spec.parse_status(read("qstat_xml_empty.xml")) == {}
    assert spec.parse_status(read("qstat_xml_j_unknown.xml")) == {}
    mixed = states(spec.parse_status(read("qstat_xml_mixed.xml")))
    assert mixed["19"] == S.PENDING and mixed["20.3"] == S.PENDING and mixed["15"] == S.RUNNING


def test_expand_tasks():
    assert _expand_tasks("1-5:2") == [1, 3, 5]
    assert _expand_tasks("2-4:1,9") == [2, 3, 4, 9]
    assert _expand_tasks("7") == [7]


def _qstat_xml(state: str) -> str:
    """A pending-section job_list in qstat -xml's shape (as in qstat_xml_array_pending_running.xml)."""
    return ("<?xml version='1.0'?><job_info><queue_info></queue_info><job_info>"
            f"<job_list state='pending'><JB_job_number>9</JB_job_number><state>{state}</state>"
            "<tasks>1-2:1</tasks></job_list></job_info></job_info>")


@pytest.mark.parametrize("native", sorted(SgeSpec.STATES))
def test_every_qstat_state_in_the_table(native):
    got = spec.parse_status(_qstat_xml(native))
    assert got["9.1"].state == got["9.2"].state == SgeSpec.STATES[native]
    assert got["9.1"].native == native


def test_unknown_qstat_state_is_unknown_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcpar"):
        got = spec.parse_status(_qstat_xml("Xqz"))
    assert got["9.1"].state is S.UNKNOWN and got["9.1"].state.is_live
    assert "unknown native job state 'Xqz'" in caplog.text


@pytest.mark.parametrize("name,key,state,code", [
    ("qacct_ok.txt", "13", S.COMPLETED, 0),
    ("qacct_fail.txt", "14", S.FAILED, 3),
    ("qacct_hrt.txt", "15", S.TIMEOUT, 137),           # failed 37, category -l h_rt=5
    ("qacct_notify_hrt.txt", "6", S.TIMEOUT, 137),     # -notify: USR2 at h_rt, killed 60 s later
    ("qacct_srt.txt", "16", S.TIMEOUT, 138),           # failed 100, SIGUSR1 from s_rt
    ("qacct_mem.txt", "17", S.FAILED, 1),              # h_vmem: MemoryError, not a kill
    ("qacct_delr.txt", "18", S.CANCELLED, 137),        # qdel while running
])
def test_qacct_records(name, key, state, code):
    got = spec.parse_final_status(read(name))
    assert (got[key].state, got[key].exit_code) == (state, code)


def test_qacct_array_and_missing():
    assert states(spec.parse_final_status(read("qacct_array.txt"))) == {
        "20.1": S.COMPLETED, "20.2": S.COMPLETED, "20.3": S.COMPLETED}
    assert set(spec.parse_final_status(read("qacct_pe_project_account.txt"))) == {"28.1", "28.2"}
    assert spec.parse_final_status(read("qacct_held.txt")) == {}     # qdel while pending: no record
    assert spec.parse_final_status(read("qacct_unknown.txt")) == {}
    assert spec.final_status_argv(["20.1", "20.2"]) == ["qacct", "-j", "20"]
    assert spec.final_status_argv(["20.1", "21.2"]) == ["qacct", "-j"]


def _qacct(failed: str, exit_status: str, category: str = "-l h_rt=60", wall: str = "10s") -> str:
    return ("==============================================================\n"
            f"qname        all.q\njobnumber    5\ntaskid       2\nfailed       {failed}\n"
            f"exit_status  {exit_status}\nru_wallclock {wall}\ncategory     {category}\n")


@pytest.mark.parametrize("code", sorted(SgeSpec.FAILED_CODES))
def test_every_failed_code_in_the_table(code):
    got = spec.parse_final_status(_qacct(f"{code}  : text", "2"))["5.2"]
    if code == 0:
        assert got.state is S.FAILED                    # exit_status 2 before h_rt
    elif code == 100:
        assert got.state is S.FAILED                    # exit 2 is not SIGKILL/SIGUSR1
    else:
        assert got.state is SgeSpec.FAILED_CODES[code]


def test_failed_refinements_and_unknown_code(caplog):
    def final(*a, **k):
        return spec.parse_final_status(_qacct(*a, **k))["5.2"].state

    assert final("0", "0") is S.COMPLETED
    assert final("0", "3", wall="61s") is S.TIMEOUT          # stopped itself at h_rt after SIGUSR2
    assert final("37  : qmaster enforced h_rt", "137", category="-l h_vmem=1G,h_rt=600") is S.OUT_OF_MEMORY
    assert final("100 : assumedly after job", "137") is S.CANCELLED
    assert final("100 : assumedly after job", "138", category="-l s_rt=5") is S.TIMEOUT
    with caplog.at_level(logging.WARNING, logger="hpcpar"):
        assert final("99  : new", "0") is S.UNKNOWN
    assert "unknown qacct failed code" in caplog.text


def test_config_and_slots_probes():
    conf = spec.parse_config(read("qconf_sconf.txt"))
    assert conf == {"max_array_size": 75000, "accounting": True, "accounting_flush_s": 2}
    assert spec.parse_config("reporting_params accounting=false flush_time=00:00:15\n")["accounting"] is False
    assert spec.parse_config("max_aj_tasks 500\n") == {"max_array_size": 500, "accounting": True,
                                                      "accounting_flush_s": 15}
    assert spec.parse_slots(read("qstat_g_c.txt"), None, 1) == 2
    assert spec.parse_slots(read("qstat_g_c.txt"), "all.q", 2) == 1
    assert spec.parse_slots(read("qstat_g_c.txt"), "other.q", 1) is None


def test_pending_reason_from_the_state_letters():
    """Recorded qstat -xml (sge_status(5) letters): a held job's reason is "hold"; a queued or
    running one has none."""
    mixed = spec.parse_status(read("qstat_xml_mixed.xml"))
    assert (mixed["19"].native, mixed["19"].reason) == ("hqw", "hold")
    assert mixed["20.3"].reason == "" and mixed["15"].reason == ""
    assert not mixed["19"].blocked
    assert spec.parse_status(_qstat_xml("hRwq"))["9.2"].reason == "hold, restarted"
