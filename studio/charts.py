"""Pure: job-folder rows -> Plotly figure dicts ({"data", "layout"}); no Django, no I/O.

Rows are the CSV rows `perflogs` reads (column -> text). A figure with
nothing to draw is None, so a page can show an empty state instead.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .perflogs import MiniBatchLog, NodePerf, Row

Figure = dict[str, Any]

MAX_POINTS = 2000  # per trace
MAX_BARS = 2000  # mini-batch attempts drawn on the timeline
MAX_DURATIONS = 5000  # run() durations sent for the histogram
MAX_PROCESSES = 40  # process traces per chart
THROUGHPUT_BUCKETS = 60

RESOURCE_CHARTS = (
    ("node_cpu", "Node CPU"),
    ("node_memory", "Node memory"),
    ("disk_used", "Disk used"),
    ("disk_io", "Disk I/O"),
    ("process_cpu", "Process CPU"),
    ("process_rss", "Process memory"),
)
MINI_BATCH_CHARTS = (
    ("timeline", "Mini-batch timeline"),
    ("throughput", "Throughput"),
    ("run_durations", "run() durations"),
)

STATUS_COLORS = {
    "succeeded": "#12805c",
    "failed": "#c4320a",
    "pending": "#f79009",
    "stale": "#98a2b3",
}
STATUS_NAMES = {
    "succeeded": "succeeded",
    "failed": "failed",
    "pending": "failed, retried",
    "stale": "stale (ignored)",
}
# Bucket widths for the throughput chart, in seconds.
_INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def job_figures(perf: list[NodePerf] | None, log: MiniBatchLog) -> dict[str, Figure]:
    """Every chart of the Metrics tab that has data, by chart key."""
    names = process_names(log.attempts)
    figures = {
        "timeline": timeline(log.recent, log.total, log.sampled),
        "throughput": throughput(log.attempts, log.total),
        "run_durations": run_durations(log.attempts, log.sampled),
    }
    if perf:
        figures |= {
            "node_cpu": node_chart(perf, "cpu_pct", "Node CPU", "CPU %"),
            "node_memory": node_chart(
                perf, "memory_used_mb", "Node memory", "used (MB)"
            ),
            "disk_used": disk_used(perf),
            "disk_io": disk_io(perf),
            "process_cpu": process_chart(perf, names, "cpu_pct", "Process CPU"),
            "process_rss": process_chart(perf, names, "rss_mb", "Process memory"),
        }
    return {key: figure for key, figure in figures.items() if figure}


def node_chart(
    perf: Sequence[NodePerf], column: str, title: str, y_title: str
) -> Figure | None:
    """One line per node of a node_resource_usage.csv column."""
    series = {_safe(n.node): _xy(n.resources, column) for n in perf}
    y_range = [0, 100] if column.endswith("_pct") else None
    return _lines(title, y_title, series, y_range)


def disk_used(perf: Sequence[NodePerf]) -> Figure | None:
    series = {_safe(n.node): _xy(n.disk, "disk_used_gb") for n in perf}
    return _lines("Disk used", "used (GB)", series)


def disk_io(perf: Sequence[NodePerf]) -> Figure | None:
    """Read and write rates per node, from the cumulative MB counters."""
    series = {}
    for n in perf:
        for column, label in (("read_mb", "read"), ("write_mb", "write")):
            series[_safe(f"{n.node} {label}")] = _rates(n.disk, column)
    return _lines("Disk I/O", "MB/s", series)


def process_chart(
    perf: Sequence[NodePerf],
    names: dict[tuple[str, str], str],
    column: str,
    title: str,
) -> Figure | None:
    """One line per scoring process (or child of one), named node/process."""
    series: dict[str, list[Row]] = defaultdict(list)
    for n in perf:
        for row in n.processes:
            pid = row["pid"]
            process = row.get("process")
            label = (
                _safe(f"{n.node}/{process}")
                if process
                else names.get((n.node, pid))
                or _safe(f"{n.node} pid {pid} ({row['name']})")
            )
            series[label].append(row)
    labels = sorted(series)
    if len(labels) > MAX_PROCESSES:
        title = f"{title} (first {MAX_PROCESSES} of {len(labels)} processes)"
    y_title = "CPU %" if column == "cpu_pct" else "RSS (MB)"
    xy = {label: _xy(series[label], column) for label in labels[:MAX_PROCESSES]}
    return _lines(title, y_title, xy)


def process_names(attempts: Sequence[Row]) -> dict[tuple[str, str], str]:
    """(node, pid) -> "node/process", as processed_mini-batches.csv recorded it."""
    return {(r["node"], r["pid"]): _lane(r) for r in attempts}


def timeline(
    attempts: Sequence[Row], total: int = 0, estimated: bool = False
) -> Figure | None:
    """A Gantt chart: one bar per attempt, a row per process, colour = status.

    `total` counts all attempts when `attempts` holds only the latest ones.
    """
    shown = list(attempts[-MAX_BARS:])
    if not shown:
        return None
    traces = []
    for status in STATUS_COLORS:
        rows = [r for r in shown if r["status"] == status]
        if not rows:
            continue
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": STATUS_NAMES[status],
                "base": [_utc_text(r["start_time"]) for r in rows],
                "x": [round(_float(r["duration_s"]) * 1000, 1) for r in rows],
                "y": [_lane(r) for r in rows],
                "hovertext": [_attempt_text(r) for r in rows],
                "hovertemplate": "%{hovertext}<extra></extra>",
                "marker": {
                    "color": STATUS_COLORS[status],
                    # An outline keeps millisecond bars visible on a long axis.
                    "line": {"color": STATUS_COLORS[status], "width": 1},
                },
            }
        )
    title = "Mini-batch timeline"
    if total > len(shown):
        about = "about " if estimated else ""
        title += f" (last {len(shown):,} of {about}{total:,} attempts)"
    lanes = len({trace_y for t in traces for trace_y in t["y"]})
    layout = _layout(title, "", height=min(900, 110 + 28 * lanes))
    layout["barmode"] = "overlay"
    layout["yaxis"] = {
        "type": "category",
        "categoryorder": "category descending",
        "automargin": True,
    }
    layout["hovermode"] = "closest"
    return {"data": traces, "layout": layout}


def throughput(attempts: Sequence[Row], total: int = 0) -> Figure | None:
    """Items finished per time bucket, by their attempt's end time."""
    ends = [(_epoch(r["end_time"]), r) for r in attempts]
    ends = [(t, r) for t, r in ends if t is not None]
    if not ends:
        return None
    first = min(t for t, _ in ends)
    span = max(t for t, _ in ends) - first
    interval = next(
        (s for s in _INTERVALS if span / s <= THROUGHPUT_BUCKETS), _INTERVALS[-1]
    )
    # A sampled report stands for more rows than were read.
    weight = max(1.0, total / len(ends)) if total else 1.0
    succeeded: dict[float, float] = defaultdict(float)
    failed: dict[float, float] = defaultdict(float)
    for moment, row in ends:
        bucket = math.floor(moment / interval) * interval
        # Items of a retried attempt are counted when they finally end.
        if row["status"] == "succeeded":
            succeeded[bucket] += _float(row["succeeded_items"]) * weight
        if row["status"] in ("succeeded", "failed"):
            failed[bucket] += _float(row["failed_items"]) * weight
    buckets = sorted(succeeded.keys() | failed.keys())
    x = [_epoch_text(b) for b in buckets]
    traces = [_bar("succeeded", x, [round(succeeded[b]) for b in buckets])]
    if any(failed.values()):
        traces.append(_bar("failed", x, [round(failed[b]) for b in buckets]))
    unit = _interval_text(interval)
    estimated = ", estimated" if weight > 1 else ""
    title = f"Throughput (items per {unit}{estimated})"
    layout = _layout(title, f"items / {unit}")
    layout["barmode"] = "stack"
    layout["bargap"] = 0.1
    return {"data": traces, "layout": layout}


def run_durations(attempts: Sequence[Row], sampled: bool = False) -> Figure | None:
    """A histogram of run() seconds, succeeded and failed attempts overlaid."""
    traces = []
    for name, statuses in (
        ("succeeded", ("succeeded",)),
        ("failed", ("failed", "pending")),
    ):
        values = [_float(r["run_s"]) for r in attempts if r["status"] in statuses]
        if values:
            traces.append(
                {
                    "type": "histogram",
                    "name": name,
                    "x": _thin(values, MAX_DURATIONS),
                    "nbinsx": 40,
                    "opacity": 0.8,
                    "marker": {"color": STATUS_COLORS[name]},
                }
            )
    if not traces:
        return None
    title = "run() durations"
    if sampled or len(attempts) > MAX_DURATIONS:
        shown = min(len(attempts), MAX_DURATIONS)
        title += f" (a sample of {shown:,} attempts)"
    layout = _layout(title, "attempts")
    layout["xaxis"] = {
        "title": {"text": "run() seconds"},
        "rangemode": "tozero",
        "automargin": True,
    }
    layout["barmode"] = "overlay"
    return {"data": traces, "layout": layout}


def _lines(
    title: str,
    y_title: str,
    series: dict[str, tuple[list[str], list[float | None]]],
    y_range: list[float] | None = None,
) -> Figure | None:
    traces = [
        {"type": "scatter", "mode": _mode(x), "name": name, "x": x, "y": y}
        for name, (x, y) in series.items()
        if x
    ]
    if not traces:
        return None
    layout = _layout(title, y_title)
    layout["hovermode"] = "x unified"
    if len(traces) > 4:
        # Many processes: a scrolling column beside the plot, not over the title.
        layout["legend"] = {"orientation": "v", "x": 1.02, "y": 1, "yanchor": "top"}
    if y_range:
        layout["yaxis"]["range"] = y_range
    return {"data": traces, "layout": layout}


def _mode(x: Sequence[object]) -> str:
    # A few samples (a short job) are points; lines alone would hide them.
    return "lines+markers" if len(x) <= 60 else "lines"


def _bar(name: str, x: list[str], y: list[float]) -> Figure:
    return {
        "type": "bar",
        "name": name,
        "x": x,
        "y": y,
        "marker": {"color": STATUS_COLORS[name]},
    }


def _layout(title: str, y_title: str, height: int = 280) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 48, "b": 36},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "paper_bgcolor": "#fff",
        "plot_bgcolor": "#fff",
        "showlegend": True,
        # On the title's line, right-aligned: below the plot it hits the axis.
        "legend": {
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
            "traceorder": "normal",
        },
        "xaxis": {"type": "date", "automargin": True},
        "yaxis": {
            "title": {"text": y_title},
            "rangemode": "tozero",
            "zeroline": False,
            "automargin": True,
        },
        # Live updates through Plotly.react keep the user's zoom and toggles.
        "uirevision": "keep",
    }


def _xy(rows: Sequence[Row], column: str) -> tuple[list[str], list[float | None]]:
    rows = _thin(rows, MAX_POINTS)
    return [_utc_text(r["timestamp"]) for r in rows], [_number(r[column]) for r in rows]


def _rates(rows: Sequence[Row], column: str) -> tuple[list[str], list[float | None]]:
    """Per-second rate between consecutive samples of a cumulative counter."""
    rows = _thin(rows, MAX_POINTS + 1)
    x, y = [], []
    for before, after in zip(rows, rows[1:], strict=False):
        start, end = _epoch(before["timestamp"]), _epoch(after["timestamp"])
        low, high = _number(before[column]), _number(after[column])
        rate = None
        if None not in (start, end, low, high) and end > start and high >= low:
            rate = round((high - low) / (end - start), 3)
        x.append(_utc_text(after["timestamp"]))
        y.append(rate)
    return x, y


def _thin(items: Sequence[Any], cap: int) -> list[Any]:
    """At most `cap` items, evenly strided, always keeping the last one."""
    if len(items) <= cap:
        return list(items)
    step = -(-len(items) // cap)
    kept = list(items[::step])
    kept[-1] = items[-1]
    return kept


def _attempt_text(row: Row) -> str:
    text = (
        f"mini-batch {row['mini_batch']} attempt {row['attempt']}:"
        f" {STATUS_NAMES.get(row['status'], row['status'])}<br>"
        f"{_lane(row)}, {row['succeeded_items']}/"
        f"{row['total_items']} items, {_float(row['duration_s']):.3f} s"
    )
    if row.get("error"):
        text += "<br>" + _safe(row["error"][:120])
    return text


def _lane(row: Row) -> str:
    return _safe(f"{row['node']}/{row['process']}")


def _safe(text: str) -> str:
    # Plotly reads names and hover text as HTML-like markup; what a script
    # wrote must show as text.
    return html.escape(text, quote=False)


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc_text(text: str) -> str | None:
    # Plotly ignores time zones, so times go out as naive UTC.
    moment = _parse_time(text)
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _epoch(text: str) -> float | None:
    moment = _parse_time(text)
    return None if moment is None else moment.timestamp()


def _epoch_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _interval_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _float(text: str) -> float:
    return _number(text) or 0.0
