"""Self-contained HTML rendering of the report blocks (one file; figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

from validation.report.render_md import Block, Bullets, Code, Figure, Heading, Notice, Para, Table

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#1b1b1b;line-height:1.45;font-size:15px}
h1{font-size:1.6em;border-bottom:2px solid #333;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #bbb;padding-bottom:.15em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px;width:auto}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr:nth-child(even) td{background:#fafafa}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.7em;overflow-x:auto;font-size:12.5px}
code{font-family:Menlo,Consolas,monospace}
.notice{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em;margin:.8em 0}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#444;margin-top:.3em}
.v-holds{color:#11702a;font-weight:600}
.v-within{color:#8a6d00;font-weight:600}
.v-not-reproduced{color:#b00020;font-weight:600}
.v-not-tested{color:#555;font-weight:600}
""".strip()

_VERDICT_CLASS = {
    "holds": "v-holds",
    "holds within estimator error": "v-within",
    "not reproduced": "v-not-reproduced",
    "not tested": "v-not-tested",
}


def _inline(text: str) -> str:
    """Escape text and turn `code` spans into <code>."""
    esc = html.escape(text, quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)


def _cell(text: str) -> str:
    cls = _VERDICT_CLASS.get(text)
    return f'<td class="{cls}">{_inline(text)}</td>' if cls else f"<td>{_inline(text)}</td>"


def render_html(
    blocks: list[Block], figures: Mapping[str, bytes], *, title: str = "GeLoRA validation report"
) -> str:
    """One self-contained HTML page of ``blocks``.

    Parameters
    ----------
    blocks : list of Block
        From :func:`validation.report.render_md.document`.
    figures : mapping of str to bytes
        PNG bytes by figure stem; a :class:`Figure` block whose stem is missing prints a "not drawn" notice.
    title : str
        The page title.

    Returns
    -------
    str
        The HTML text (UTF-8; no external resources, so it opens offline).
    """
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{CSS}\n</style>",
        "</head>",
        "<body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Notice):
            out.append(f'<div class="notice">{_inline(b.text)}</div>')
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.headers) + "</tr>"
            body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><thead>{head}</thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Figure):
            png = figures.get(b.stem)
            if png is None:
                out.append(f'<div class="notice">figure {html.escape(b.stem)}: not drawn (no data)</div>')
            else:
                data = base64.b64encode(png).decode("ascii")
                out.append(
                    f'<figure id="fig-{html.escape(b.stem)}"><img alt="{html.escape(b.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{_inline(b.caption)}</figcaption></figure>'
                )
        elif isinstance(b, Code):
            out.append(f"<pre><code>{html.escape(b.text, quote=False)}</code></pre>")
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown block {b!r}")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
