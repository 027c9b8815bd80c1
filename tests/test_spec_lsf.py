"""LsfSpec parsers against IBM LSF 10.1's documented output (tests/data/lsf, constructed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hpcpar.backends.lsf import LsfSpec, job_name_of
from hpcpar.states import JobState as S

DATA = Path(__file__).parent / "data" / "lsf"
spec = LsfSpec()


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_parse_job_id():
    assert spec.parse_job_id(read("bsub_plain.stdout")) == "1234"
    assert spec.parse_job_id(read("bsub_array_default_queue.stdout")) == "1235"
    with pytest.raises(ValueError):
        spec.parse_job_id("Request aborted by esub. Job not submitted.\n")


def test_submissions_index_lists_stdin_and_name():
    text = "#!/bin/bash\n#BSUB -J 'my job'\n#BSUB -n 2\nexec true\n"
    subs = spec.submissions_for_text(text, [0, 1, 2, 5], max_running=3, max_array_size=None)
    assert len(subs) == 1
    assert subs[0].argv == ("bsub", "-J", "my job[1-3,6]%3")
    assert subs[0].stdin == text and subs[0].indices == (0, 1, 2, 5)
    split = spec.submissions_for_text(text, range(5), None, max_array_size=2)
    assert [s.argv[2] for s in split] == ["my job[1-2]", "my job[3-4]", "my job[5]"]
    assert job_name_of("#!/bin/bash\nexec true\n") == "hpcpar"
    assert spec.task_id("1235", 3) == "1235[3]" and spec.log_stem("1235[3]") == "1235_3"
    assert spec.cancel_argv(["1235[3]"]) == ["bkill", "1235[3]"]


def test_bjobs_json_array_mixed():
    got = spec.parse_status(read("bjobs_json_array_mixed.json"))
    assert {k: (v.state, v.exit_code) for k, v in got.items()} == {
        "1235[1]": (S.COMPLETED, 0),
        "1235[2]": (S.FAILED, 3),
        "1235[3]": (S.TIMEOUT, 140),
        "1235[4]": (S.OUT_OF_MEMORY, 130),
        "1235[5]": (S.CANCELLED, 130),
        "1235[6]": (S.RUNNING, None),
        "1235[7]": (S.PENDING, None),
        "1235[8]": (S.PENDING, None),
    }
    assert got["1235[3]"].native == "EXIT TERM_RUNLIMIT"


def test_bjobs_single_and_not_found():
    assert spec.parse_status(read("bjobs_json_single_done.json"))["1234"].state is S.COMPLETED
    got = spec.parse_status(read("bjobs_json_not_found.json"))
    assert set(got) == {"1234"}                       # the ERROR record is skipped
    assert spec.status_failed_means_gone(read("bjobs_not_found_plain.stderr"))
    assert spec.status_failed_means_gone("")
    assert not spec.status_failed_means_gone("LSF is down. Please wait ...")


def _bjobs(stat: str, code: str = "", reason: str = "") -> str:
    return json.dumps({"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [
        {"JOBID": "77", "JOBINDEX": "4", "STAT": stat, "EXIT_CODE": code, "EXIT_REASON": reason}]})


@pytest.mark.parametrize("native", sorted(LsfSpec.STATES))
def test_every_stat_in_the_table(native):
    got = spec.parse_status(_bjobs(native))["77[4]"]
    assert got.state is LsfSpec.STATES[native]


@pytest.mark.parametrize("keyword", sorted(LsfSpec.TERM_REASONS))
def test_every_termination_reason_in_the_table(keyword):
    got = spec.parse_status(_bjobs("EXIT", "1", f"{keyword}: text"))["77[4]"]
    assert got.state is LsfSpec.TERM_REASONS[keyword]


def test_unknown_stat_and_reason_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcpar"):
        assert spec.parse_status(_bjobs("NEWSTATE"))["77[4]"].state is S.UNKNOWN
        assert spec.parse_status(_bjobs("EXIT", "1", "TERM_NEW: x"))["77[4]"].state is S.FAILED
    assert "unknown native job state 'NEWSTATE'" in caplog.text
    assert "unknown termination reason 'TERM_NEW'" in caplog.text


def test_pending_reason_from_pend_reason():
    assert "pend_reason" in spec.status_argv(["1240"])[4].split()
    got = spec.parse_status(read("bjobs_json_pending_reasons.json"))
    assert got["1240[2]"].reason == "The user has reached his/her job slot limit"
    assert got["1241"].reason == "Job dependency condition not satisfied"
    assert got["1240[1]"].reason == "" and not any(s.blocked for s in got.values())
    # without the field (older records), no reason
    assert all(s.reason == "" for s in spec.parse_status(read("bjobs_json_array_mixed.json")).values())
