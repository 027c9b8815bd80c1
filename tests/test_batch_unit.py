"""Offline checks of the batch layer's pure parts: array splitting, index offsets, ranges."""

from hpcpar.backends.slurm import SlurmSpec, _expand_task_ids
from hpcpar.backends.spec import compress_ranges, range_text


def test_compress_ranges():
    assert compress_ranges([7, 1, 2, 3, 3, 9, 10]) == [(1, 3), (7, 7), (9, 10)]
    assert range_text(compress_ranges([3, 17, 42])) == "3,17,42"
    assert range_text(compress_ranges(range(10))) == "0-9"


def test_slurm_only_lost_indices_are_resubmitted():
    (sub,) = SlurmSpec().submissions("/r/job.sh", [3, 17, 42], None, 1001)
    assert sub.argv == ("sbatch", "--parsable", "--array=3,17,42", "/r/job.sh")
    (sub,) = SlurmSpec().submissions("/r/job.sh", range(100), 10, 1001)
    assert "--array=0-99%10" in sub.argv


def test_slurm_arrays_past_max_array_size_are_split_with_an_offset():
    subs = SlurmSpec().submissions("/r/job.sh", range(2500), None, 1001)
    assert [s.offset for s in subs] == [0, 1001, 2002]
    assert [len(s.indices) for s in subs] == [1001, 1001, 498]
    assert "--array=0-1000" in subs[0].argv and not any(a.startswith("--export") for a in subs[0].argv)
    assert "--array=0-1000" in subs[1].argv and "--export=ALL,HPCPAR_INDEX_OFFSET=1001" in subs[1].argv
    assert "--array=0-497" in subs[2].argv and "--export=ALL,HPCPAR_INDEX_OFFSET=2002" in subs[2].argv
    for s in subs:                              # every array index stays below MaxArraySize
        assert all(0 <= i - s.offset < 1001 for i in s.indices)


def test_expand_task_ids():
    assert _expand_task_ids("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]
    assert _expand_task_ids("12_7") == ["12_7"] and _expand_task_ids("12") == ["12"]


def test_sacct_exit_codes():
    st = SlurmSpec().parse_final_status("5_1|CANCELLED by 0|0:15\n5_2|FAILED|3:0\n5_3|COMPLETED|0:0\n")
    assert (st["5_1"].state.name, st["5_1"].exit_code) == ("CANCELLED", 143)
    assert (st["5_2"].state.name, st["5_2"].exit_code) == ("FAILED", 3)
    assert (st["5_3"].state.name, st["5_3"].exit_code) == ("COMPLETED", 0)


def test_queue_limits():
    info = SlurmSpec().parse_queue("debug*|0/2/0/2|1:00:00\nshort|0/2/0/2|5:00\nlong|0/8/0/8|infinite\n", None)
    assert (info.name, info.total_cpus, info.max_walltime_s) == ("debug", 2, 3600)
    assert SlurmSpec().parse_queue("short|0/2/0/2|5:00\n", "short").max_walltime_s == 300
    assert SlurmSpec().parse_queue("long|0/8/0/8|infinite\n", "long").max_walltime_s is None
    assert SlurmSpec().parse_queue("", "nosuch") is None


def test_watcher_tolerates_failing_status_calls_for_a_while(monkeypatch):
    """A status command that keeps failing is retried; futures fail only after FAIL_AFTER_S."""
    from concurrent.futures import Future

    import hpcpar
    from hpcpar.runstate import ChunkState, Run
    from hpcpar.watcher import Watcher

    backend = hpcpar.Executor("slurm")._backend
    watcher = Watcher(backend)
    c = ChunkState(0, Future(), 1, job_id="1", task_id="1_0")
    run = Run(None, {0: c}, {"submissions": []})
    monkeypatch.setattr(watcher, "_settle", lambda runs: None)
    clock = [1000.0]
    monkeypatch.setattr("hpcpar.watcher.time.monotonic", lambda: clock[0])
    for _ in range(20):                                   # 20 failures within 10 minutes: keep going
        watcher._on_error([run], RuntimeError("slurmctld down"))
        clock[0] += 25
    assert not c.future.done()
    clock[0] += 200
    watcher._on_error([run], RuntimeError("slurmctld down"))
    assert isinstance(c.future.exception(timeout=0), RuntimeError)
