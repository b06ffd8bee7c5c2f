"""A self-contained HTML page for a teacher: piano roll, tempo and velocity curves, per-bar table."""

from __future__ import annotations

import html

from llaqo_model.analysis.report import IssueKind, PerformanceReport
from llaqo_model.model.assessment import Assessment

WIDTH = 1100
ROLL_HEIGHT = 320
CURVE_HEIGHT = 140
MARGIN = 40
ISSUE_COLOURS = {IssueKind.WRONG_NOTE: "#d62728", IssueKind.MISSED_NOTE: "#d62728", IssueKind.EXTRA_NOTE: "#ff7f0e"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:14px;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.issue{color:#b00}.muted{color:#777}svg{background:#fafafa;border:1px solid #eee}
.legend span{display:inline-block;margin-right:16px;font-size:13px}
"""


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    return out_lo + (value - lo) / max(hi - lo, 1e-9) * (out_hi - out_lo)


def _bar_lines(report: PerformanceReport, t_end: float, height: int) -> list[str]:
    parts = []
    problems = set(report.problem_bars())
    for bar in report.bars:
        x = _scale(bar.start_s, 0, t_end, MARGIN, WIDTH - 10)
        fill = "#fde0e0" if bar.bar in problems else "none"
        x2 = _scale(bar.end_s, 0, t_end, MARGIN, WIDTH - 10)
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{max(x2 - x, 0):.1f}" height="{height}" fill="{fill}" '
            'opacity="0.5"/>'
        )
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#bbb"/>')
        parts.append(f'<text x="{x + 2:.1f}" y="12" font-size="10" fill="#555">{bar.bar}</text>')
    return parts


def piano_roll(report: PerformanceReport) -> str:
    """Score notes as outlines, performed notes filled; wrong/extra/missed notes in colour."""
    t_end = max(report.duration_s, 1.0)
    pitches = [n.pitch for n in report.notes] + [
        s.pitch for s in report.score_notes if s.status != "outside"
    ]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (40, 90)
    row = (ROLL_HEIGHT - 20) / (hi - lo + 1)

    def y(p: int) -> float:
        return ROLL_HEIGHT - 4 - (p - lo + 1) * row

    parts = _bar_lines(report, t_end, ROLL_HEIGHT)
    for s in report.score_notes:
        if s.status == "outside":
            continue
        x0 = _scale(s.expected_s, 0, t_end, MARGIN, WIDTH - 10)
        x1 = _scale(s.expected_end_s, 0, t_end, MARGIN, WIDTH - 10)
        dash = ' stroke-dasharray="3,2" stroke-width="2"' if s.status in ("missed", "wrong") else ""
        colour = "#d62728" if s.status in ("missed", "wrong") else "#999"
        parts.append(
            f'<rect x="{x0:.1f}" y="{y(s.pitch):.1f}" width="{max(x1 - x0, 1):.1f}" height="{row:.1f}" '
            f'fill="none" stroke="{colour}"{dash}><title>score: bar {s.bar}, {s.status}</title></rect>'
        )
    flagged = {(i.pitch, round(i.time_s, 3)): i for _, i in report.stated_issues() if i.pitch is not None}
    for n in report.notes:
        issue = flagged.get((n.pitch, round(n.onset, 3)))
        colour = ISSUE_COLOURS.get(issue.kind, "#1f77b4") if issue else "#1f77b4"
        x0 = _scale(n.onset, 0, t_end, MARGIN, WIDTH - 10)
        x1 = _scale(n.offset, 0, t_end, MARGIN, WIDTH - 10)
        title = html.escape(issue.detail) if issue else f"pitch {n.pitch}, velocity {n.velocity}"
        parts.append(
            f'<rect x="{x0:.1f}" y="{y(n.pitch):.1f}" width="{max(x1 - x0, 1):.1f}" height="{row:.1f}" '
            f'fill="{colour}" opacity="{0.35 + 0.65 * n.velocity / 127:.2f}"><title>{title}</title></rect>'
        )
    for p in report.pedal:
        x0 = _scale(p.onset, 0, t_end, MARGIN, WIDTH - 10)
        x1 = _scale(p.offset, 0, t_end, MARGIN, WIDTH - 10)
        parts.append(
            f'<rect x="{x0:.1f}" y="{ROLL_HEIGHT - 4}" width="{max(x1 - x0, 1):.1f}" height="4" '
            'fill="#2ca02c"><title>sustain pedal</title></rect>'
        )
    return f'<svg width="{WIDTH}" height="{ROLL_HEIGHT}">{"".join(parts)}</svg>'


def curve(
    report: PerformanceReport, points: list[tuple[float, float]], label: str, dots: bool = False
) -> str:
    """A simple line (or dot) plot over the take's time axis with the bar grid."""
    t_end = max(report.duration_s, 1.0)
    parts = _bar_lines(report, t_end, CURVE_HEIGHT)
    if points:
        values = [v for _, v in points]
        lo, hi = min(values), max(values)
        lo, hi = (lo - 5, hi + 5) if hi - lo < 10 else (lo, hi)
        xy = [
            (_scale(t, 0, t_end, MARGIN, WIDTH - 10), _scale(v, lo, hi, CURVE_HEIGHT - 10, 20))
            for t, v in points
        ]
        if dots:
            parts += [f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="2" fill="#1f77b4"/>' for x, yy in xy]
        else:
            path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in xy)
            parts.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
        parts.append(f'<text x="2" y="24" font-size="10">{hi:.0f}</text>')
        parts.append(f'<text x="2" y="{CURVE_HEIGHT - 10}" font-size="10">{lo:.0f}</text>')
    parts.append(f'<text x="{WIDTH - 200}" y="{CURVE_HEIGHT - 4}" font-size="11" fill="#555">{label}</text>')
    return f'<svg width="{WIDTH}" height="{CURVE_HEIGHT}">{"".join(parts)}</svg>'


def bar_table(report: PerformanceReport) -> str:
    """One row per bar: time, tempo, loudness, timing spread and what to fix."""
    rows = []
    for b in report.bars:
        stated = b.stated_issues(report.min_confidence)
        issues = "<br>".join(f'<span class="issue">{html.escape(i.detail)}</span>' for i in stated)
        fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
        rows.append(
            f"<tr><td>{b.bar}</td><td>{b.start_s:.1f}–{b.end_s:.1f} s</td><td>{fmt(b.tempo_bpm, '.0f')}</td>"
            f"<td>{fmt(b.mean_velocity, '.0f')}</td><td>{fmt(b.onset_deviation_ms, '.0f')}</td>"
            f"<td>{b.notes_matched}/{b.notes_expected}</td><td>{issues or '<span class=muted>ok</span>'}</td></tr>"
        )
    head = (
        "<tr><th>bar</th><th>time</th><th>tempo (bpm)</th><th>velocity</th><th>timing spread (ms)</th>"
        "<th>notes</th><th>comments</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(report: PerformanceReport, assessment: Assessment | None = None) -> str:
    """The whole page; `assessment` adds the model's ratings and feedback."""
    title = html.escape(report.audio)
    summary = [f"{report.duration_s:.1f} s, {len(report.notes)} notes"]
    if report.alignment:
        a = report.alignment
        summary.append(
            f"score {html.escape(report.score or '')}: {100 * a.coverage:.0f}% covered, {a.wrong} wrong, "
            f"{a.missed} missed, {a.extra} extra notes"
        )
    summary += [f"<b>{html.escape(w)}</b>" for w in report.warnings]
    model = ""
    if assessment is not None:
        ratings = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in assessment.ratings.items()
        )
        model = (
            f"<h2>Assessment ({html.escape(assessment.model)})</h2><p>{html.escape(assessment.feedback)}"
            f"</p><table>{ratings}<tr><td>overall</td><td>{assessment.overall}</td></tr></table>"
        )
    tempo = [((b.start_s + b.end_s) / 2, b.tempo_bpm) for b in report.bars if b.tempo_bpm is not None]
    written = report.measures.written_tempo_bpm
    marked = f'<p class="muted">The score marks {written:.0f} beats a minute.</p>' if written else ""
    velocity = [(n.onset, float(n.velocity)) for n in report.notes]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>LLaQo — {title}</title>
<style>{STYLE}</style></head><body>
<h1>LLaQo report: {title}</h1><p>{"<br>".join(summary)}</p>{model}
<h2>Piano roll</h2><div class="legend"><span style="color:#1f77b4">■ played</span>
<span style="color:#999">□ score</span>
<span style="color:#d62728">■ wrong / □ missed</span><span style="color:#ff7f0e">■ extra</span>
<span style="color:#2ca02c">▬ pedal</span><span style="background:#fde0e0">bars with comments</span></div>
{piano_roll(report)}
<h2>Tempo per bar</h2>{marked}{curve(report, tempo, "tempo (bpm) per bar")}
<h2>Velocity</h2>{curve(report, velocity, "note velocity (1–127)", dots=True)}
<h2>Bar by bar</h2>{bar_table(report) if report.bars else '<p class="muted">No score given: no bar table.</p>'}
</body></html>"""
