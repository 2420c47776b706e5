"""The fleet report: every series ranked by requests saved per extra pod-minute, as CSV,
JSON and one self-contained HTML page (no network needed to view it)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from forecaster.fleet.judge import FAILED, GAINS, NO_GAIN, SHORT

COLUMNS = (
    ("id", "series"),
    ("verdict", "verdict"),
    ("saved_per_extra_pod_minute", "requests saved per extra pod-minute"),
    ("reactive_dropped", "reactive: dropped"),
    ("scaleahead_dropped", "scaleahead: dropped"),
    ("best_baseline", "best baseline"),
    ("best_baseline_dropped", "best baseline: dropped"),
    ("reactive_pod_minutes", "reactive: pod-minutes"),
    ("scaleahead_pod_minutes", "scaleahead: pod-minutes"),
    ("best_baseline_pod_minutes", "best baseline: pod-minutes"),
    ("budget", "budget"),
    ("quantile_mean", "q bought"),
    ("lead_seconds", "lead (s)"),
    ("step_seconds", "step (s)"),
    ("history_days", "history (days)"),
    ("sentence", "what it means"),
)
ORDER = {GAINS: 0, NO_GAIN: 1, SHORT: 2, FAILED: 3}


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Series that gain first, by requests saved per extra pod-minute (saved for no
    extra pod-minute first of all), then the others by verdict and id."""

    def key(row: dict[str, Any]) -> tuple[int, float, str]:
        per = row.get("saved_per_extra_pod_minute")
        if per is None:
            per = math.inf if (row.get("requests_saved") or 0) > 0 else -math.inf
        return ORDER.get(row["verdict"], 4), -per, str(row["id"])

    return sorted(rows, key=key)


def fleet_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by verdict, and requests dropped and pod-minutes summed over the judged
    series: reactive scaling against scaleahead at the default budget."""
    judged = [r for r in rows if "requests" in r]
    requests = sum(r["requests"] for r in judged)

    def dropped(method: str) -> float:
        return sum(r[f"{method}_dropped"] * r["requests"] for r in judged)

    def pods(method: str) -> float:
        return sum(r[f"{method}_pod_minutes"] for r in judged)

    return {
        "series": len(rows),
        "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in ORDER},
        "requests": requests,
        "dropped": {m: dropped(m) for m in ("reactive", "scaleahead")},
        "pod_minutes": {
            **{m: pods(m) for m in ("reactive", "scaleahead")},
            "perfect foresight": sum(r["perfect_pod_minutes"] for r in judged),
        },
    }


def write(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """report.csv, report.json and report.html in `out`; the fleet summary."""
    rows = ranked(rows)
    summary = fleet_summary(rows)
    (out / "report.json").write_text(json.dumps({"summary": summary, "series": rows}, indent=1))
    with (out / "report.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([key for key, _ in COLUMNS])
        writer.writerows([[_plain(row.get(key)) for key, _ in COLUMNS] for row in rows])
    (out / "report.html").write_text(page(summary, rows))
    return summary


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def _cell(key: str, value: Any) -> tuple[str, str]:
    """(text shown, value sorted by) of one cell."""
    if value is None:
        return "", ""
    if key.endswith("_dropped"):
        return f"{value:.2%}", f"{value:.8f}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}", repr(value)
    return html.escape(str(value)), html.escape(str(value))


def page(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The report as one HTML page: the fleet summary, then a table of every series
    that sorts by any column when its heading is clicked."""
    v = summary["verdicts"]
    dropped, pods = summary["dropped"], summary["pod_minutes"]
    share = {m: dropped[m] / summary["requests"] if summary["requests"] else 0.0 for m in dropped}
    extra = pods["scaleahead"] / pods["reactive"] - 1 if pods["reactive"] else 0.0
    head = "".join(
        f'<th data-col="{i}" title="click to sort">{html.escape(label)}</th>'
        for i, (_, label) in enumerate(COLUMNS)
    )
    views = {row["id"]: row["view"] for row in rows if row.get("view")}
    data = json.dumps(views, separators=(",", ":")).replace("</", "<\\/")
    body = []
    for row in rows:
        cells = [_cell(key, row.get(key)) for key, _ in COLUMNS]
        tds = "".join(f'<td data-sort="{s}">{t}</td>' for t, s in cells)
        body.append(f'<tr class="{html.escape(row["verdict"]).replace(" ", "-")}">{tds}</tr>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scaleahead what-if</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
td:first-child,td:nth-child(2),td:nth-child(6),td:last-child{{text-align:left}}
td:last-child{{min-width:36em}}
th{{vertical-align:bottom}}
th{{cursor:pointer;background:#eee;position:sticky;top:0}}
tr.gains td:nth-child(2){{color:#060;font-weight:bold}}
tr.failed td:nth-child(2){{color:#a00}}
td.open{{cursor:pointer;color:#1f4e99;text-decoration:underline}}
tr.detail td{{text-align:left;background:#fafafa}}
</style></head><body>
<h1>What predictive scaling would do for this fleet</h1>
<p id="summary">{summary["series"]} series: <b>{v[GAINS]} gain</b>, {v[NO_GAIN]} no gain,
{v[SHORT]} not enough history, {v[FAILED]} failed. Over the judged series, reactive
scaling drops {share["reactive"]:.2%} of {summary["requests"]:,.0f} requests for
{pods["reactive"]:,.0f} pod-minutes; scaleahead at the default budget drops
{share["scaleahead"]:.2%} for {pods["scaleahead"]:,.0f} ({extra:+.1%}); perfect foresight
would take {pods["perfect foresight"]:,.0f}.</p>
<p>Click a series to see its judged days: demand (requests a second, at its peak in each
point) and the Ready capacity of reactive scaling and of scaleahead (at their lowest);
hover over the chart to read them.</p>
<table id="series"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script type="application/json" id="views">{data}</script>
<script>
var VIEWS = JSON.parse(document.getElementById("views").textContent);
var LINES = [["demand", "#222"], ["reactive", "#999"], ["scaleahead", "#1f77b4"]];
function chart(v) {{
  var W = 1100, H = 220, L = 50, n = v.demand.length, top = 0;
  LINES.forEach(function (l) {{ v[l[0]].forEach(function (y) {{ if (y > top) top = y; }}); }});
  top = top || 1;
  var x = function (i) {{ return L + (W - L - 10) * i / Math.max(n - 1, 1); }};
  var y = function (val) {{ return H - 20 - (H - 30) * val / top; }};
  var svg = '<svg class="view" width="' + W + '" height="' + H + '">';
  svg += '<text x="4" y="14" font-size="11">' + top.toPrecision(3) + '/s</text>';
  svg += '<text x="4" y="' + (H - 22) + '" font-size="11">0</text>';
  LINES.forEach(function (l, k) {{
    svg += '<text x="' + (W - 520 + 170 * k) + '" y="14" font-size="11" fill="' + l[1]
      + '">&#9632; ' + (k ? l[0] + " Ready capacity" : l[0]) + '</text>';
  }});
  LINES.forEach(function (l) {{
    var d = "", pen = "M";
    v[l[0]].forEach(function (val, i) {{
      if (val === null) {{ pen = "M"; return; }}
      d += pen + x(i).toFixed(1) + "," + y(val).toFixed(1); pen = "L";
    }});
    svg += '<path d="' + d + '" fill="none" stroke="' + l[1] + '" stroke-width="1.2"/>';
  }});
  svg += '<line class="cursor" y1="5" y2="' + (H - 20) + '" stroke="#c00" visibility="hidden"/>';
  svg += '<text class="readout" x="' + L + '" y="' + (H - 4) + '" font-size="11">'
    + LINES.map(function (l) {{ return l[0]; }}).join(" / ") + '</text></svg>';
  return svg;
}}
function hover(svg, v) {{
  var n = v.demand.length, line = svg.querySelector(".cursor");
  var text = svg.querySelector(".readout");
  svg.addEventListener("mousemove", function (e) {{
    var box = svg.getBoundingClientRect(), px = e.clientX - box.left;
    var i = Math.round((px - 50) / (1100 - 60) * (n - 1));
    if (i < 0 || i >= n) return;
    var at = new Date((v.t0 + i * v.dt) * 1000).toISOString().slice(0, 16).replace("T", " ");
    line.setAttribute("x1", px); line.setAttribute("x2", px);
    line.setAttribute("visibility", "visible");
    text.textContent = at + "  " + LINES.map(function (l) {{
      var val = v[l[0]][i]; return l[0] + " " + (val === null ? "-" : val);
    }}).join("  ");
  }});
}}
document.querySelectorAll("#series tbody tr").forEach(function (tr) {{
  var id = tr.cells[0].textContent, v = VIEWS[id];
  if (!v) return;
  tr.cells[0].classList.add("open");
  tr.cells[0].addEventListener("click", function () {{
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) {{ next.remove(); return; }}
    var row = document.createElement("tr"), cell = document.createElement("td");
    row.className = "detail"; cell.colSpan = tr.cells.length; cell.innerHTML = chart(v);
    row.appendChild(cell); tr.after(row); hover(cell.querySelector("svg"), v);
  }});
}});
document.querySelectorAll("#series th").forEach(function (th) {{
  th.addEventListener("click", function () {{
    var col = Number(th.dataset.col), tbody = document.querySelector("#series tbody");
    var asc = th.dataset.dir !== "asc";
    document.querySelectorAll("#series th").forEach(function (h) {{ delete h.dataset.dir; }});
    th.dataset.dir = asc ? "asc" : "desc";
    var rows = Array.prototype.slice.call(tbody.rows);
    tbody.querySelectorAll("tr.detail").forEach(function (r) {{ r.remove(); }});
    rows = rows.filter(function (r) {{ return !r.classList.contains("detail"); }});
    rows.sort(function (a, b) {{
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y), c;
      if (x === "" || y === "") c = (x === "") - (y === "");
      else if (!isNaN(nx) && !isNaN(ny)) c = nx - ny;
      else c = x.localeCompare(y);
      return asc ? c : -c;
    }});
    rows.forEach(function (r) {{ tbody.appendChild(r); }});
  }});
}});
</script></body></html>
"""
