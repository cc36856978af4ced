"""Tests of pipelines/segment_report.py as its author writes them: plain pytest, the
pipeline run in process with `run_local` (no database, no worker), in milliseconds.

    .venv/bin/python -m pytest pipelines/tests
"""

import pandas as pd
import pytest

from app.pipelines import ParamError
from pipelines.segment_report import SEGMENTS, segments


def test_it_scores_every_segment_big_enough_and_reports_them_by_churn():
    result = segments.run_local({"customers": 5_000, "min_customers": 1})

    table = result.outputs["report"]
    assert sorted(row["segment"] for row in table) == sorted(SEGMENTS)
    assert [row["churn_rate"] for row in table] == sorted((row["churn_rate"] for row in table), reverse=True)
    assert sum(row["customers"] for row in table) == 5_000
    assert result.metrics["segments_scored"] == len(SEGMENTS)
    assert result.tables["report"]["Churn by segment"]["columns"][0] == "segment"


def test_small_segments_are_left_out():
    result = segments.run_local({"customers": 1_000, "min_customers": 150})

    counts = result.outputs["customers"]["segment"].value_counts()
    assert [row["segment"] for row in result.outputs["report"]] != []
    assert {row["segment"] for row in result.outputs["report"]} == {str(s) for s, n in counts.items() if n >= 150}


def test_the_customers_table_is_a_dataframe_the_same_for_the_same_seed():
    first = segments.run_local({"customers": 500}, given={"segment_names": []})
    again = segments.run_local({"customers": 500}, given={"segment_names": []})

    assert isinstance(first.outputs["customers"], pd.DataFrame)
    assert first.skipped["report"] == "it returned skip('no segment has min_customers customers: nothing to report')"
    pd.testing.assert_frame_equal(first.outputs["customers"], again.outputs["customers"])


def test_the_alert_runs_only_above_the_threshold():
    quiet = segments.run_local({"customers": 2_000, "alert_churn": 1.0})
    loud = segments.run_local({"customers": 2_000, "alert_churn": 0.0})

    assert quiet.skipped == {"churn_alert": "its condition is false"}
    assert "churn_alert" not in loud.skipped and loud.outputs["churn_alert"]
    assert loud.tags == ["churn-alert"]


def test_one_segment_can_be_scored_alone_from_a_given_table():
    table = pd.DataFrame({
        "segment": pd.Categorical(["trial", "trial", "students"], categories=SEGMENTS),
        "spend": [10.0, 30.0, 5.0], "visits": [1, 3, 2], "churned": [True, False, False],
    })

    result = segments.run_local(given={"customers": table, "segment_names": ["trial"]})

    assert result.outputs["score"] == [
        {"segment": "trial", "customers": 2, "mean_spend": 20.0, "mean_visits": 2.0, "churn_rate": 0.5}
    ]


def test_bad_parameters_are_refused_by_name():
    with pytest.raises(ParamError) as caught:
        segments.run_local({"customers": 10})

    assert set(caught.value.errors) == {"customers"}
