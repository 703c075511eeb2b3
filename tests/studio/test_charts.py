"""charts: perf and mini-batch rows -> Plotly figure dicts, from real engine runs."""

from __future__ import annotations

import json
import re
import shutil
import time

from studio import charts, perflogs
from tests.studio import test_perflogs

# Real job folders (module-scoped fixtures), shared with the perflogs tests.
failing_job = test_perflogs.failing_job
bad_init_job = test_perflogs.bad_init_job
unmonitored_job = test_perflogs.unmonitored_job
day_job = test_perflogs.day_job

ALL_CHARTS = {key for key, _ in charts.RESOURCE_CHARTS + charts.MINI_BATCH_CHARTS}
NAIVE_UTC = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{3})?$")


def figures_of(job_dir):
    return charts.job_figures(
        perflogs.read_perf(job_dir), perflogs.read_mini_batches(job_dir)
    )


def traces(figure, name=None):
    return [t for t in figure["data"] if name is None or t["name"] == name]


def test_it_draws_every_chart_of_a_monitored_job(failing_job):
    figures = figures_of(failing_job)

    assert set(figures) == ALL_CHARTS
    for figure in figures.values():
        assert set(figure) == {"data", "layout"}
        assert figure["data"] and figure["layout"]["title"]["text"]
    json.dumps(figures)  # plain JSON, ready for json_script and JsonResponse


def test_node_charts_have_one_line_per_node_over_utc_time(failing_job):
    figures = figures_of(failing_job)

    cpu = figures["node_cpu"]
    assert [t["name"] for t in cpu["data"]] == ["node-a"]
    assert all(NAIVE_UTC.match(x) for x in cpu["data"][0]["x"])
    assert all(0 <= y <= 100 for y in cpu["data"][0]["y"] if y is not None)
    assert cpu["layout"]["yaxis"]["range"] == [0, 100]
    assert cpu["layout"]["xaxis"]["type"] == "date"
    assert traces(figures["node_memory"])[0]["y"][0] > 0
    assert [t["name"] for t in figures["disk_io"]["data"]] == [
        "node-a read",
        "node-a write",
    ]


def test_process_charts_name_each_scoring_process(failing_job):
    figures = figures_of(failing_job)

    names = {t["name"] for t in figures["process_rss"]["data"]}
    assert {"node-a/process000", "node-a/process001"} <= names
    for trace in traces(figures["process_rss"]):
        assert all(y > 0 for y in trace["y"] if y is not None)


def test_the_timeline_has_a_bar_per_attempt_coloured_by_status(failing_job):
    timeline = figures_of(failing_job)["timeline"]

    by_name = {t["name"]: t for t in timeline["data"]}
    assert set(by_name) == {"succeeded", "failed", "failed, retried"}
    assert len(by_name["succeeded"]["x"]) == 5
    assert by_name["failed"]["marker"]["color"] == charts.STATUS_COLORS["failed"]
    retried = by_name["failed, retried"]
    assert retried["y"][0].startswith("node-a/process00")
    assert "mini-batch 1 attempt 1" in retried["hovertext"][0]
    assert "ValueError: cannot score file_003.txt" in retried["hovertext"][0]
    assert all(NAIVE_UTC.match(b) for b in retried["base"])
    assert all(x >= 0 for t in timeline["data"] for x in t["x"])


def test_throughput_counts_items_once_however_often_they_were_tried(failing_job):
    throughput = figures_of(failing_job)["throughput"]

    succeeded, failed = traces(throughput, "succeeded"), traces(throughput, "failed")
    assert sum(succeeded[0]["y"]) == 10
    assert sum(failed[0]["y"]) == 2  # the final attempt only, not the retried one
    assert throughput["layout"]["title"]["text"] == "Throughput (items per 1 s)"


def test_run_durations_overlay_succeeded_and_failed_attempts(failing_job):
    histogram = figures_of(failing_job)["run_durations"]

    assert [(t["type"], t["name"], len(t["x"])) for t in histogram["data"]] == [
        ("histogram", "succeeded", 5),
        ("histogram", "failed", 2),
    ]


def test_an_unmonitored_job_still_gets_its_mini_batch_charts(unmonitored_job):
    figures = figures_of(unmonitored_job)

    assert set(figures) == {key for key, _ in charts.MINI_BATCH_CHARTS}


def test_a_job_that_never_ran_a_mini_batch_has_only_resource_charts(bad_init_job):
    figures = figures_of(bad_init_job)

    assert not {"timeline", "throughput", "run_durations"} & set(figures)
    assert "node_cpu" in figures


def test_an_empty_job_folder_has_no_charts(tmp_path):
    assert figures_of(tmp_path) == {}


def test_several_nodes_get_one_trace_each(failing_job, tmp_path):
    job_dir = tmp_path / "job"
    shutil.copytree(failing_job, job_dir)
    perf = job_dir / "logs" / "perf"
    shutil.copytree(perf / "node-a", perf / "node-b")

    figures = figures_of(job_dir)

    for key in ("node_cpu", "node_memory", "disk_used"):
        assert [t["name"] for t in figures[key]["data"]] == ["node-a", "node-b"]
    # The monitor names each scoring process, even one that never finished a
    # mini-batch on that node.
    names = {t["name"] for t in figures["process_cpu"]["data"]}
    assert {"node-a/process000", "node-b/process000"} <= names


def test_a_day_at_one_sample_a_second_renders_quickly_within_the_caps(day_job):
    # This thread's CPU time: neither other processes nor other threads'
    # leftovers from earlier tests stretch it.
    started = time.thread_time()
    figures = figures_of(day_job)
    elapsed = time.thread_time() - started

    assert set(figures) == ALL_CHARTS
    for key, figure in figures.items():
        for trace in figure["data"]:
            assert 0 < len(trace["x"]) <= max(charts.MAX_POINTS, charts.MAX_DURATIONS)
            if key not in ("run_durations", "timeline"):
                assert len(trace["x"]) <= charts.MAX_POINTS
    assert len(figures["timeline"]["data"][0]["x"]) == charts.MAX_BARS
    assert "last 2,000 of about 8" in figures["timeline"]["layout"]["title"]["text"]
    assert [t["name"] for t in figures["throughput"]["data"]] == ["succeeded"]
    assert figures["throughput"]["layout"]["title"]["text"].endswith(", estimated)")
    assert figures["run_durations"]["layout"]["title"]["text"] == (
        "run() durations (a sample of 5,000 attempts)"
    )
    cpu_x = figures["node_cpu"]["data"][0]["x"]
    assert cpu_x[0] == "2026-01-01 00:00:00.000"
    assert cpu_x[-1] == "2026-01-01 23:59:59.000"
    assert len(json.dumps(figures)) < 2_000_000
    print(f"86,400-row job folder read and charted in {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0


def test_it_thins_long_rows_to_the_cap_keeping_the_latest():
    rows = [
        {"timestamp": f"2026-01-01T00:00:00.{n:03d}+00:00", "cpu_pct": str(n % 100)}
        for n in range(1000)
    ] * 10
    perf = [perflogs.NodePerf("node-a", rows, [], [])]

    figure = charts.node_chart(perf, "cpu_pct", "Node CPU", "CPU %")

    trace = figure["data"][0]
    assert len(trace["x"]) <= charts.MAX_POINTS
    assert trace["x"][-1] == "2026-01-01 00:00:00.999"
    assert trace["mode"] == "lines"


def test_disk_io_is_a_rate_with_gaps_where_a_counter_restarts():
    def row(second, read):
        return {
            "timestamp": f"2026-01-01T00:00:{second:02d}.000+00:00",
            "read_mb": str(read),
            "write_mb": "",
        }

    rows = [row(0, 100), row(2, 110), row(4, 5), row(5, 8)]
    figure = charts.disk_io([perflogs.NodePerf("node-a", [], rows, [])])

    read, write = figure["data"]
    assert read["y"] == [5.0, None, 3.0]
    assert write["y"] == [None, None, None]
    assert read["x"][0] == "2026-01-01 00:00:02.000"


def test_times_with_other_offsets_are_shown_in_utc():
    rows = [{"timestamp": "2026-01-01T02:00:00.000+02:00", "cpu_pct": "5"}]

    figure = charts.node_chart(
        [perflogs.NodePerf("n", rows, [], [])], "cpu_pct", "Node CPU", "CPU %"
    )

    assert figure["data"][0]["x"] == ["2026-01-01 00:00:00.000"]


def test_script_written_text_reaches_plotly_as_text_not_markup():
    row = {
        "mini_batch": "3", "attempt": "1", "status": "failed", "node": "node-a",
        "process": "process000", "pid": "7", "total_items": "2",
        "succeeded_items": "0", "failed_items": "2", "duration_s": "0.5",
        "run_s": "0.4", "start_time": "2026-01-01T00:00:00.000+00:00",
        "end_time": "2026-01-01T00:00:00.500+00:00",
        "error": 'KeyError: \'<img src=x onerror="alert(1)">\'',
    }  # fmt: skip

    hover = charts.timeline([row])["data"][0]["hovertext"][0]

    assert "<img" not in hover
    assert '&lt;img src=x onerror="alert(1)"&gt;' in hover
