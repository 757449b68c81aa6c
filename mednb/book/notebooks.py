"""Executed notebooks → HTML pages with nbconvert's HTMLExporter (the ``lab`` template, offline).

Our template (:data:`TEMPLATE`) extends nbconvert's ``lab/index.html.j2``: it drops the require.js, MathJax,
Mermaid and widget-manager scripts the stock template loads from CDNs, links one shared stylesheet instead of
inlining JupyterLab's 240 KB of CSS into every page, and wraps the notebook in the book's navigation.
Before export, :func:`prepare` turns remote Markdown images (the Colab badge) into plain links and replaces
each widget view by a note plus a still of its saved state (images, HTML labels, control values, Output
widgets' outputs); the saved widget state itself stays in the page.
"""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+\.ipynb")
REMOTE_IMG = re.compile(r"\[!\[([^\]]*)\]\((https?://[^)\s]+)\)\]\(([^)\s]+)\)|!\[([^\]]*)\]\((https?://[^)\s]+)\)")

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block notebook_css %}
<link rel="stylesheet" href="assets/jupyterlab.css">
<link rel="stylesheet" href="assets/book.css">
{% endblock notebook_css %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block body_header -%}
<body class="jp-Notebook book-nb" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<div class="book">
{{ resources.book.nav }}
<main class="book-main">
{{ resources.book.banner }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.book.pager }}
</main>
</div>
</body>
{% endblock body_footer %}
"""


def exporter():
    """nbconvert's HTMLExporter on the ``lab`` template with :data:`TEMPLATE` on top."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    return HTMLExporter(template_name="lab", template_file="mednb_book.html.j2",
                        extra_loaders=[DictLoader({"mednb_book.html.j2": TEMPLATE})],
                        exclude_anchor_links=False, embed_images=True)


# what the stock template inlines into each page (replaced by our notebook_css block)
LAB_EXTRA = """
a.anchor-link{display:none}.jp-Collapser{display:none}.jp-InputArea{overflow:hidden}
.jp-InputArea-editor{overflow:hidden}
.cm-editor.cm-s-jupyter .highlight pre{padding:var(--jp-code-padding) 4px;margin:0;font-family:inherit;
 font-size:inherit;line-height:inherit;color:inherit}
.jp-OutputArea-output pre{line-height:inherit;font-family:inherit}
.jp-RenderedText pre{color:var(--jp-content-font-color1);font-size:var(--jp-code-font-size)}
body.book-nb{margin:0;padding:0;--jp-cell-prompt-width:5.6em}
@media (max-width:800px){.jp-InputPrompt,.jp-OutputPrompt{display:none}}
"""


def lab_css() -> str:
    """JupyterLab's stylesheet and light theme as shipped with nbconvert's ``lab`` template (data: URLs only),
    plus :data:`LAB_EXTRA`."""
    from jupyter_core.paths import jupyter_path
    for base in jupyter_path("nbconvert", "templates", "lab", "static"):
        index = Path(base) / "index.css"
        if index.is_file():
            theme = Path(base) / "theme-light.css"
            return index.read_text(encoding="utf-8") + "\n" + (theme.read_text(encoding="utf-8")
                                                                 if theme.is_file() else "") + LAB_EXTRA
    return LAB_EXTRA


def colab_url(nb) -> str | None:
    """The notebook's Colab link, read from its first cells."""
    for c in nb.cells[:3]:
        m = COLAB.search(c.source)
        if m:
            return m.group(0)
    return None


def _unlink_remote_images(text: str) -> str:
    def repl(m):
        if m.group(1) is not None:  # a badge: [![alt](img)](link) → [alt](link)
            return f"[{m.group(1) or 'link'}]({m.group(3)})"
        return f"[{m.group(4) or 'image'} (online image)]({m.group(5)})"
    return REMOTE_IMG.sub(repl, text)


def _model(state: dict, ref) -> tuple[str | None, dict | None]:
    mid = str(ref).removeprefix("IPY_MODEL_")
    return mid, state.get(mid)


def _still(state: dict, mid: str, extra: list, depth: int = 0) -> str:
    """HTML of one widget's saved state: boxes recurse, images and HTML show, controls list their value."""
    m = state.get(mid)
    if m is None or depth > 20:
        return ""
    name, s = m.get("model_name", ""), m.get("state", {})
    if name.endswith("BoxModel") or name in ("TabModel", "AccordionModel", "StackModel"):
        kids = "".join(_still(state, _model(state, c)[0], extra, depth + 1) for c in s.get("children", []))
        return f'<div class="book-w-{"row" if name == "HBoxModel" else "col"}">{kids}</div>'
    if name == "ImageModel":
        buf = next((b for b in m.get("buffers", []) if b.get("path") == ["value"]), None)
        if buf and buf.get("encoding", "base64") == "base64":
            return f'<img class="book-w-img" alt="widget image" src="data:image/{s.get("format", "png")};base64,{buf["data"]}">'
        return ""
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="book-w-html">{s.get("value", "")}</div>'
    if name == "OutputModel":
        extra.extend(s.get("outputs", []))
        return ""
    if "value" in s and not isinstance(s["value"], (dict, list)) or name == "LabelModel":
        desc = html.escape(str(s.get("description") or name.removesuffix("Model")))
        rng = f" ({s['min']}–{s['max']})" if "min" in s and "max" in s else ""
        return f'<div class="book-w-ctl">{desc}: <b>{html.escape(str(s.get("value")))}</b>{html.escape(rng)}</div>'
    return ""


def _widget_note(colab: str | None, saved: bool) -> str:
    how = ('Run it live: <code>jupyter lab notebooks/</code> in a clone (JupyterLab)'
           + (f', or <a href="{html.escape(colab)}">open it in Colab</a>' if colab else ", or with the Colab badge"))
    what = ("Below: what it showed when the run executed it (saved widget state); its controls need a live kernel."
            if saved else "Its state was not saved with the run, so nothing of it can be shown here.")
    return f'<div class="book-note book-widget"><b>Interactive widget.</b> {what} {how}.</div>'


def prepare(nb):
    """A copy of ``nb`` ready for the offline page: remote images unlinked, widget views as notes + stills."""
    import nbformat
    nb = copy.deepcopy(nb)
    colab = colab_url(nb)
    state = ((nb.metadata.get("widgets") or {}).get(WIDGET_STATE) or {}).get("state") or {}
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = _unlink_remote_images(c.source)
            continue
        if c.cell_type != "code":
            continue
        outs = []
        for o in c.get("outputs", []):
            view = (o.get("data") or {}).get(WIDGET_VIEW) if o.get("output_type") in ("display_data",
                                                                                     "execute_result") else None
            if view is None:
                outs.append(o)
                continue
            mid = view.get("model_id")
            extra: list = []
            still = _still(state, mid, extra) if mid in state else ""
            note = _widget_note(colab, mid in state)
            outs.append(nbformat.v4.new_output("display_data", data={"text/html": note + still,
                                                                     "text/plain": o["data"].get("text/plain", "")}))
            outs.extend(nbformat.from_dict(x) for x in extra)
        c.outputs = outs
    return nb


def render(path: Path, book: dict, exp=None) -> str:
    """HTML of one executed notebook; ``book`` holds the ``nav``, ``banner`` and ``pager`` HTML of the page."""
    import nbformat
    nb = prepare(nbformat.read(str(path), as_version=4))
    exp = exp or exporter()
    body, _ = exp.from_notebook_node(nb, resources={"book": book, "metadata": {"name": path.stem}})
    return body
