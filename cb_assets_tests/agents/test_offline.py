import pytest

from cb_assets.agents.offline import _pair_from_log_dir, touched_files


def test_touched_files_reads_the_diff_headers() -> None:
    patch = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@\n+++ not a header\n"
        "--- a/y/z.py\n+++ b/y/z.py\n"
    )
    assert touched_files(patch) == ["x.py", "y/z.py"]


def test_pair_comes_from_upstreams_log_dir() -> None:
    assert _pair_from_log_dir("/l/run/coop/dspy_task/8394/f3_f4") == ("dspy_task", 8394, [3, 4])
    with pytest.raises(RuntimeError, match="feature pair"):
        _pair_from_log_dir("/l/run/coop/dspy_task/8394/other")
