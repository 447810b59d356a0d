"""The report writer turns recorded fault outcomes and JUnit results into the tables."""

from __future__ import annotations

import json
from pathlib import Path

from bench.reliability import main

RECORDS = [
    {
        "test": "tests/faults/test_s3.py::test_outage",
        "fault": "S3 endpoint stopped 10 s during a checkpoint upload",
        "survived": True,
        "intervals_lost": 0,
        "recover_s": 10.4,
        "dice": 0.3312,
        "baseline_dice": 0.3368,
        "note": "",
    },
    {
        "test": "tests/faults/test_x.py::test_disk",
        "fault": "output folder full",
        "survived": False,
        "intervals_lost": None,
        "recover_s": None,
        "dice": None,
        "baseline_dice": 0.3368,
        "note": "disk",
    },
]

JUNIT = """<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="tests.bad_inputs.test_bad_inputs" name="test_refused_in_process[a]"/>
<testcase classname="tests.bad_inputs.test_bad_inputs" name="test_refused_by_the_console_script[a]"/>
<testcase classname="tests.bad_inputs.test_bad_inputs" name="test_refused_in_process[b]"/>
<testcase classname="tests.bad_inputs.test_bad_inputs" name="test_refused_in_process[c]">
<failure message="two lines"/></testcase>
<testcase classname="tests.bad_inputs.test_bad_inputs" name="test_the_corpus_is_large"/>
<testcase classname="tests.unetflow.test_ray_train_small_val" name="test_one_case_val"/>
<testcase classname="tests.unetflow.test_ray_train_folder_data" name="test_prepared_folder_passes_through"/>
</testsuite></testsuites>"""


def test_records_and_junit_become_the_report(tmp_path: Path) -> None:
    records, junit, out = tmp_path / "r.jsonl", tmp_path / "j.xml", tmp_path / "report.md"
    records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    junit.write_text(JUNIT)
    assert main(["--records", str(records), "--junit", str(junit), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert (
        "| S3 endpoint stopped 10 s during a checkpoint upload | yes | 0 | 10.4 "
        "| 0.3312 / 0.3368 | `tests/faults/test_s3.py::test_outage` |  |" in lines
    )
    row = "| output folder full | **no** | n/m | n/m | n/m | `tests/faults/test_x.py::test_disk` |"
    assert row + " disk |" in lines
    # Cases a, b refused; c failed; the one-case split accepted; an unlisted test ignored.
    assert "| 2 | 1 | 1 | 4 |" in lines
