"""The book's own pages (index, claims, leaderboards, a failed notebook without output) and the navigation
every page shares, as Jinja2 templates; notebook pages come from :mod:`mednb.book.notebooks`."""
from __future__ import annotations

import jinja2

CSS = """
*{box-sizing:border-box}
body.book-page{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;line-height:1.5}
.book{display:flex;min-height:100vh}
.book-nav{flex:0 0 15.5rem;background:#f6f8fa;border-right:1px solid #d0d7de;padding:1rem .8rem;font-size:.9rem;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;position:sticky;top:0;height:100vh;overflow-y:auto}
.book-nav h2{font-size:1rem;margin:.2rem 0 .6rem}.book-nav h3{font-size:.75rem;text-transform:uppercase;color:#57606a;margin:1rem 0 .3rem}
.book-nav ul{list-style:none;margin:0;padding:0}.book-nav li{margin:.15rem 0}
.book-nav a{color:#0969da;text-decoration:none}.book-nav a:hover{text-decoration:underline}
.book-nav a.current{font-weight:700;color:#1f2328}
.book-main{flex:1 1 auto;min-width:0;padding:1.2rem 2rem 2rem;max-width:72rem}
.book-page .book-main h1{font-size:1.7rem;margin-top:.3rem}
.book-page table{border-collapse:collapse;font-size:.9rem;margin:.8rem 0;display:block;overflow-x:auto;max-width:100%}
.book-page th,.book-page td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
.book-page th{background:#f6f8fa}
.status{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.8rem;font-weight:600;white-space:nowrap}
.status-ok{background:#dafbe1;color:#116329}.status-failed,.status-interrupted,.status-missing{background:#ffebe9;color:#a40e26}
.verdict{font-weight:600}
.book-note,.book-failed{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:.95rem}
.book-note{border-left:4px solid #0969da;background:#ddf4ff;padding:.6rem .9rem;margin:.8rem 0;border-radius:4px}
.book-failed{border-left:4px solid #cf222e;background:#ffebe9;padding:.6rem .9rem;margin:.8rem 0;border-radius:4px}
.book-failed pre,.book-page pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem;white-space:pre}
.book-pager{display:flex;justify-content:space-between;gap:1rem;margin:2.5rem 0 1rem;padding-top:1rem;border-top:1px solid #d0d7de;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.book-pager a{color:#0969da;text-decoration:none}
figure.chart{margin:1rem 0}figure.chart img{max-width:100%;height:auto;border:1px solid #eee}
figure.chart figcaption{font-size:.85rem;color:#57606a}
dl.evidence{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}
dl.evidence dt{font-weight:600}dl.evidence dd{margin:0;word-break:break-word}
.book-w-row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start}.book-w-col{display:flex;flex-direction:column;gap:.3rem}
.book-w-img{max-width:100%;image-rendering:pixelated;min-width:8rem}.book-w-ctl{font-size:.85rem;color:#57606a}
body.book-nb{padding:0}body.book-nb .book-main{padding:1rem 1.5rem 2rem}
@media (max-width:800px){
 .book{display:block}
 .book-nav{position:static;height:auto;border-right:0;border-bottom:1px solid #d0d7de;padding:.6rem .8rem}
 .book-nav ul{display:flex;flex-wrap:wrap;gap:.1rem .8rem}
 .book-nav h3{margin:.5rem 0 .2rem}
 .book-main,body.book-nb .book-main{padding:.8rem}
 .book-page .book-main h1{font-size:1.35rem}
}
"""

NAV = """<nav class="book-nav" aria-label="pages">
<h2><a href="index.html">{{ title }}</a></h2>
<h3>Notebooks</h3><ul>
{%- for e in entries %}
<li><a href="{{ e.page }}"{% if e.page == current %} class="current" aria-current="page"{% endif %}>{{ e.stem }}</a>
{%- if not e.ok %} <span class="status status-{{ e.status }}">{{ e.status }}</span>{% endif %}</li>
{%- endfor %}</ul>
<h3>Results</h3><ul>
<li><a href="claims.html"{% if current == 'claims.html' %} class="current"{% endif %}>Claims</a></li>
{%- for s in sweeps %}
<li><a href="{{ s.page }}"{% if s.page == current %} class="current"{% endif %}>Leaderboard: {{ s.name }}</a></li>
{%- endfor %}</ul>
</nav>"""

PAGER = """<nav class="book-pager" aria-label="previous and next">
<span>{% if prev %}<a href="{{ prev[0] }}" rel="prev">← {{ prev[1] }}</a>{% endif %}</span>
<span>{% if next %}<a href="{{ next[0] }}" rel="next">{{ next[1] }} →</a>{% endif %}</span>
</nav>"""

FAILED = """<div class="book-failed" role="alert"><b>This notebook {{ 'failed' if e.status == 'failed' else 'did not complete (' ~ e.status ~ ')' }}</b>{% if e.seconds %} after {{ secs(e.seconds) }}{% endif %}
in this run: <code>{{ e.error or 'no error recorded' }}</code>
{%- if e.traceback %}<pre>{{ e.traceback }}</pre>{% endif %}
{%- if e.path %}<p>The outputs below stop at the failing cell.</p>{% else %}<p>No executed notebook was written.</p>{% endif %}
</div>"""

LAYOUT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{{ page_title }} — {{ title }}</title>
<link rel="stylesheet" href="assets/book.css">
</head><body class="book-page"><div class="book">
{{ nav }}
<main class="book-main">
{% block main %}{% endblock %}
{{ pager }}
</main></div></body></html>
"""

INDEX = """{% extends 'layout' %}{% block main %}
<h1>{{ title }}</h1>
<p>Every notebook of a <code>mednb run</code> with profile <code>{{ run.profile }}</code>, executed on {{ env.created or 'an unknown date' }}:
{{ n_ok }}/{{ run.entries|length }} ok. Read the executed notebooks with their figures, tables and verdicts; nothing here needs a kernel.</p>
<h2>Curriculum</h2>
<table><thead><tr><th>notebook</th><th>what it teaches</th><th>status</th><th>wall time</th><th>profile</th><th>device</th><th>commit</th></tr></thead><tbody>
{%- for e in run.entries %}
<tr><td><a href="{{ e.page }}">{{ e.stem }}</a></td><td>{{ e.teaches or e.title or '—' }}</td>
<td><span class="status status-{{ e.status }}">{{ e.status }}</span>{% if not e.ok and e.error %}<br><small>{{ e.error|truncate(140) }}</small>{% endif %}</td>
<td style="white-space:nowrap">{{ secs(e.seconds) }}</td><td>{{ run.profile }}</td><td>{{ env.device_name or env.device or '—' }}</td><td><code>{{ env.commit or '—' }}</code></td></tr>
{%- endfor %}</tbody></table>
<h2>Results</h2><ul>
<li><a href="claims.html">Claims</a>: every notebook's claims with their paired verdicts and budgets ({{ n_claims }}).</li>
{%- for s in sweeps %}<li><a href="{{ s.page }}">Leaderboard of sweep {{ s.name }}</a>: ours vs the MedMNIST v2 paper, with charts.</li>{% endfor %}
</ul>
<h2>Evidence of the run</h2>
<dl class="evidence">
<dt>date</dt><dd>{{ env.created or '—' }}</dd>
<dt>command</dt><dd><code>{{ (env.command or [])|join(' ') or '—' }}</code></dd>
<dt>commit</dt><dd><code>{{ env.commit or '—' }}</code> (code version <code>{{ env.code_version or '—' }}</code>)</dd>
<dt>device</dt><dd>{{ env.device or '—' }} — {{ env.device_name or '' }}{% if env.gpu %}; GPU {{ env.gpu }}{% endif %}{% if env.cpu_threads %}; {{ env.cpu_threads }} CPU threads{% endif %}</dd>
<dt>platform</dt><dd>{{ env.platform or '—' }}</dd>
<dt>versions</dt><dd>{% for k, v in (env.versions or {}).items() %}{{ k }} {{ v }}{% if not loop.last %} · {% endif %}{% endfor %}</dd>
<dt>seeds</dt><dd>{{ (env.seeds or [])|join(', ') or '—' }}</dd>
{%- for stem, p in per_nb %}<dt>{{ stem }}</dt><dd>{{ p }}</dd>{% endfor %}
</dl>
<p>The run's own files: {% for f in files %}<a href="data/{{ f }}">{{ f }}</a>{% if not loop.last %} · {% endif %}{% endfor %}.</p>
<p><small>Built by <code>mednb book</code> with nbconvert; works offline and from the file system.</small></p>
{% endblock %}"""

CLAIMS = """{% extends 'layout' %}{% block main %}
<h1>Claims</h1>
<p>Each claim is a paired difference over seeds (same label subsets) under one training budget per comparison; the
interval is 95 % Student-t. Paper values stand beside ours, never in their place. Profile <code>{{ run.profile }}</code>.</p>
{% if problems %}<div class="book-failed"><b>Unequal budgets</b> — these comparisons are not fair and their verdicts do not stand:
<ul>{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul></div>{% endif %}
{% if claims %}<table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{%- for c in claims %}<tr>{% for k in columns %}<td{% if k == 'verdict' %} class="verdict"{% endif %}>
{%- if k == 'notebook' %}<a href="{{ c.notebook }}.html">{{ c.notebook }}</a>{% else %}{{ '—' if c[k] is none or c[k] == '' else c[k] }}{% endif %}</td>{% endfor %}</tr>
{%- endfor %}</tbody></table>
{% else %}<p>No claim was recorded in this run.</p>{% endif %}
{% endblock %}"""

LEADERBOARD = """{% extends 'layout' %}{% block main %}
<h1>Leaderboard — sweep {{ s.name }}</h1>
{% for p in header %}<p>{{ p }}</p>{% endfor %}
{% for title, f in charts.ours_vs_paper %}<figure class="chart"><img src="charts/{{ f }}" alt="{{ title }}"><figcaption>{{ title }} — mean ± sd over seeds; red diamonds: the MedMNIST v2 paper.</figcaption></figure>{% endfor %}
<h2>Test AUC and ACC vs the paper</h2>{{ main_table }}
<h2>Calibration: a reliability diagram per model</h2>
{% for model, f in charts.reliability %}<figure class="chart"><img src="charts/{{ f }}" alt="reliability diagram of {{ model }}"><figcaption>{{ model }}: accuracy vs confidence per bin, pooled over seeds.</figcaption></figure>
{% else %}<p>No unit recorded reliability bins.</p>{% endfor %}
<h2>Per-class recall and F1, balanced accuracy, ECE</h2>{{ detail_table }}
{% for title, f in charts.more %}<figure class="chart"><img src="charts/{{ f }}" alt="{{ title }}"><figcaption>{{ title }}</figcaption></figure>{% endfor %}
<h2>Failures</h2>
{% for u in failures %}<div class="book-failed"><b>{{ u.name }} — {{ u.status }}</b>: <code>{{ u.error.splitlines()[0] if u.error else '—' }}</code>
{% if u.traceback %}<pre>{{ u.traceback.rstrip().splitlines()[-15:]|join('\n') }}</pre>{% endif %}</div>
{% else %}<p>None.</p>{% endfor %}
<h2>Environment</h2>{% for line in env_lines %}<p>{{ line }}</p>{% endfor %}
<p>The sweep's own files: {% for f in files %}<a href="data/{{ s.slug }}/{{ f }}">{{ f }}</a>{% if not loop.last %} · {% endif %}{% endfor %}.</p>
{% endblock %}"""

MISSING = """{% extends 'layout' %}{% block main %}
<h1>{{ e.title or e.stem }}</h1>
{% if e.teaches %}<p>{{ e.teaches }}</p>{% endif %}
{{ banner }}
{% endblock %}"""


def secs(s) -> str:
    """Wall time as ``12.3 s`` / ``4.5 min`` (``—`` when unknown)."""
    if s is None:
        return "—"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def environment() -> jinja2.Environment:
    """Jinja2 with the book's templates, HTML autoescaping on."""
    env = jinja2.Environment(loader=jinja2.DictLoader({
        "layout": LAYOUT, "index": INDEX, "claims": CLAIMS, "leaderboard": LEADERBOARD, "missing": MISSING,
        "nav": NAV, "pager": PAGER, "failed": FAILED}), autoescape=True, trim_blocks=False)
    env.globals["secs"] = secs
    return env


def render(jenv: jinja2.Environment, name: str, **ctx) -> str:
    """One of the book's templates rendered with ``ctx``."""
    return jenv.get_template(name).render(**ctx)
