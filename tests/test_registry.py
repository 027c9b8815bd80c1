"""The scheduler registry: shipped specs by name, register_scheduler() for plugins and tests."""

from __future__ import annotations

import fakesched
import pytest

import hpcpar
from hpcpar import ConfigError
from hpcpar.backends import create, get_scheduler
from hpcpar.backends.batch import BatchBackend
from hpcpar.backends.registry import backend_names, unregister_scheduler
from hpcpar.backends.slurm import SlurmSpec
from hpcpar.config import Options


def test_every_shipped_scheduler_is_one_spec_driven_by_the_one_engine():
    for name in ("slurm", "pbs", "lsf", "sge"):
        backend = create(name, hpcpar.Resources(), Options(dialect="pro" if name == "pbs" else None))
        assert type(backend) is BatchBackend and backend.name == name
        assert backend.array_index_var == backend.spec.array_index_var
    assert backend_names()[:6] == ("local", "inline", "slurm", "pbs", "lsf", "sge")


def test_register_scheduler_adds_a_backend_and_refuses_clashes(tmp_path):
    spec = fakesched.FakeSpec(tmp_path)
    with pytest.raises(ConfigError, match="unknown backend 'fake'"):
        hpcpar.Executor("fake")
    hpcpar.register_scheduler(spec)
    try:
        assert get_scheduler("fake") is spec and "fake" in backend_names()
        assert hpcpar.Executor("fake")._backend.spec is spec
        with pytest.raises(ConfigError, match="exists; pass replace=True"):
            hpcpar.register_scheduler(fakesched.FakeSpec(tmp_path))
        with pytest.raises(ConfigError, match="exists; pass replace=True"):
            hpcpar.register_scheduler(SlurmSpec())                  # a shipped name
    finally:
        unregister_scheduler("fake")
    assert "fake" not in backend_names()
    with pytest.raises(ConfigError, match="takes a SchedulerSpec instance"):
        hpcpar.register_scheduler(SlurmSpec)                        # the class, not an instance


def test_a_spec_validates_its_own_options_before_anything_runs():
    with pytest.raises(ConfigError, match="mem_unit='XB' is not a valid LSF mem_unit"):
        hpcpar.Executor("lsf", mem_unit="XB")
    with pytest.raises(ConfigError, match="pe='a b' is not a parallel environment name"):
        hpcpar.Executor("sge", pe="a b")
    with pytest.raises(ConfigError, match="dialect='x' is not a valid PBS dialect"):
        hpcpar.Executor("pbs", dialect="x")
