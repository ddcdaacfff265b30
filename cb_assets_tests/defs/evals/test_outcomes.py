import json
from pathlib import Path

import pytest

from cb_assets.defs.evals.outcomes import eval_row, rows_to_frame
from cb_assets.defs.runs.results import ResultFileError
from cb_assets.shared.dataset import Pair
from cb_assets.shared.failures import DEFAULT_PATTERNS
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import get_setting
from cb_assets_tests.support.synthetic import write_eval

PAIR = Pair("dspy_task", 8394, 3, 4)


def row(tmp_path: Path, setting: str, **kw) -> dict:
    upstream = get_setting(setting).upstream
    write_eval(tmp_path, upstream, **kw)
    return eval_row(tmp_path, PAIR, Arm("oracle", setting, 1), ran=False, patterns=DEFAULT_PATTERNS)


@pytest.mark.parametrize(
    ("setting", "kw", "expected"),
    [
        ("solo", {"outcome": "pass"}, ("pass", None, True, True, "evaluated")),
        ("solo", {"outcome": "half"}, ("fail", None, True, False, "evaluated")),
        (
            "coop-comm",
            {"outcome": "pass", "merge": "clean"},
            ("pass", "clean", True, True, "evaluated"),
        ),
        (
            "coop-comm",
            {"outcome": "fail", "merge": "conflicts"},
            ("fail", "conflicts", False, False, "evaluated"),
        ),
        (
            "coop-nocomm",
            {"outcome": "fail", "merge": "missing_input", "error": "patch for feature 4 is empty"},
            ("error", "missing_input", False, False, "eval_error"),
        ),
        (
            "coop-nocomm",
            {
                "outcome": "fail",
                "merge": "error",
                "error": "docker.errors.APIError: 500 Server Error: OCI runtime create failed",
            },
            ("error", "error", False, False, "infra_error"),
        ),
    ],
)
def test_eval_shapes(tmp_path: Path, setting: str, kw: dict, expected: tuple) -> None:
    r = row(tmp_path, setting, **kw)
    assert (
        r["outcome"],
        r["merge_status"],
        r["feature1_passed"],
        r["feature2_passed"],
        r["classification"],
    ) == expected
    assert (r["experiment"], r["setting"], r["repeat"], r["arm"]) == (
        "oracle",
        setting,
        1,
        f"oracle/{setting}",
    )
    assert r["pair"] == PAIR.key
    frame = rows_to_frame([r])
    assert str(frame["both_passed"].dtype) == "boolean"
    assert str(frame["repeat"].dtype) == "Int64"


def test_a_repeat_is_in_the_row_and_its_arm_key(tmp_path: Path) -> None:
    write_eval(tmp_path, "coop", outcome="pass", merge="clean")
    r = eval_row(tmp_path, PAIR, Arm("nano", "coop-comm", 2), ran=False, patterns=DEFAULT_PATTERNS)
    assert (r["experiment"], r["setting"], r["repeat"], r["arm"]) == (
        "nano",
        "coop-comm",
        2,
        "nano/coop-comm/r2",
    )


def test_bad_eval_json_names_the_file_and_key(tmp_path: Path) -> None:
    path = write_eval(tmp_path, "coop", outcome="pass")
    data = json.loads(path.read_text())
    data["both_passed"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match="both_passed") as err:
        eval_row(
            tmp_path, PAIR, Arm("oracle", "coop-comm", 1), ran=False, patterns=DEFAULT_PATTERNS
        )
    assert str(path) in str(err.value)
