import pytest

from hpcpar import ConfigError, Resources, parse_mem, parse_walltime
from hpcpar.resources import format_hms

GIB, MIB = 1024**3, 1024**2


@pytest.mark.parametrize("text,expected", [
    ("4GB", 4 * GIB), ("4G", 4 * GIB), ("4gib", 4 * GIB), ("500M", 500 * MIB), ("500MB", 500 * MIB),
    ("1.5GiB", int(1.5 * GIB)), ("2T", 2 * 1024 * GIB), ("1024K", MIB), (" 8 GB ", 8 * GIB),
    (4 * GIB, 4 * GIB), (None, None),
])
def test_parse_mem_forms(text, expected):
    assert parse_mem(text) == expected


@pytest.mark.parametrize("bad", ["lots", "4 GBs", "-1G", "G4", "", "4XB", True, [4]])
def test_parse_mem_errors_name_field_value_and_forms(bad):
    with pytest.raises(ValueError) as err:
        parse_mem(bad)
    msg = str(err.value)
    assert "mem=" in msg and repr(bad) in msg and "4GB" in msg and "500M" in msg


def test_parse_mem_refuses_unitless_small_numbers():
    with pytest.raises(ConfigError, match=r"below 1 MiB.*did you leave out the unit"):
        parse_mem("4096")


@pytest.mark.parametrize("text,expected", [
    ("1:30:00", 5400), ("90min", 5400), ("2-00:00:00", 172800), ("2-12", 2 * 86400 + 12 * 3600),
    ("1-02:03", 86400 + 7200 + 180), ("05:30", 330), ("45", 45), ("1h30m", 5400), ("2h", 7200),
    ("45s", 45), ("1d", 86400), ("0.5h", 1800), (3600, 3600), (1.2, 2), (None, None),
])
def test_parse_walltime_forms(text, expected):
    assert parse_walltime(text) == expected


@pytest.mark.parametrize("bad", ["soon", "1:2:3:4", "-5", "0", "h", "1-", "tomorrow", 0, -3])
def test_parse_walltime_errors_name_field_value_and_forms(bad):
    with pytest.raises(ValueError) as err:
        parse_walltime(bad)
    msg = str(err.value)
    assert "walltime=" in msg and repr(bad) in msg and "HH:MM:SS" in msg and "90min" in msg


def test_format_hms():
    assert format_hms(5400) == "01:30:00"
    assert format_hms(172800 + 61, days=True) == "2-00:01:01"
    assert format_hms(100 * 3600) == "100:00:00"


def test_resources_from_user_parses_and_validates():
    r = Resources.from_user({"cpus_per_task": "4", "mem": "8GB", "walltime": "1:30:00", "queue": "debug",
                             "setup": "module load x", "extra_directives": ["--constraint=avx2"]})
    assert (r.cpus_per_task, r.mem, r.walltime, r.queue) == (4, 8 * GIB, 5400, "debug")
    assert r.setup == ("module load x",) and r.extra_directives == ("--constraint=avx2",)
    with pytest.raises(ConfigError, match="unknown resource.*valid: cpus_per_task"):
        Resources.from_user({"cpu": 2})
    with pytest.raises(ConfigError, match="cpus_per_task=0"):
        Resources(cpus_per_task=0)
    with pytest.raises(ConfigError, match="control character"):
        Resources(queue="debug\n#SBATCH --exclusive")
    with pytest.raises(ConfigError, match="whole number"):
        Resources.from_user({"gpus": "two"})
