"""Self-contained HTML rendering of the report blocks (one file; figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

from validation.report.render_md import (
    Block,
    Bullets,
    Code,
    Details,
    Figure,
    Heading,
    Notice,
    Para,
    Table,
    alt_text,
)

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
a{color:#0b5cad}
details{margin:.6em 0;border:1px solid #ddd;border-radius:4px;padding:.3em .8em}
details>summary{cursor:pointer;font-weight:600;padding:.2em 0}
table.claims{width:100%;font-size:13.5px}
table.claims td:first-child{min-width:12em}
table.claims td:nth-child(2){min-width:8em}
""".strip()

_VERDICT_CLASS = {
    "holds": "v-holds",
    "holds within estimator error": "v-within",
    "not reproduced": "v-not-reproduced",
    "not tested": "v-not-tested",
}


def _inline(text: str) -> str:
    """Escape text; turn `code` spans into <code> and ``[label](#anchor)`` into links within the page."""
    esc = html.escape(text, quote=False)
    esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)
    return re.sub(r"\[([^\]]+)\]\((#[\w-]+)\)", r'<a href="\2">\1</a>', esc)


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
    out += _blocks_html(blocks, figures)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _blocks_html(blocks: list[Block] | tuple[Block, ...], figures: Mapping[str, bytes]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Details):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            out.append(f"<details{anchor}><summary>{_inline(b.summary)}</summary>")
            out += _blocks_html(b.blocks, figures)
            out.append("</details>")
        elif isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Notice):
            out.append(f'<div class="notice">{_inline(b.text)}</div>')
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.headers) + "</tr>"
            body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            cls = f' class="{html.escape(b.kind)}"' if b.kind else ""
            out.append(f"<table{cls}><thead>{head}</thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Figure):
            png = figures.get(b.stem)
            if png is None:
                out.append(f'<div class="notice">figure {html.escape(b.stem)}: not drawn (no data)</div>')
            else:
                data = base64.b64encode(png).decode("ascii")
                out.append(
                    f'<figure id="fig-{html.escape(b.stem)}"><img alt="{html.escape(alt_text(b))}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{_inline(b.caption)}</figcaption></figure>'
                )
        elif isinstance(b, Code):
            out.append(f"<pre><code>{html.escape(b.text, quote=False)}</code></pre>")
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown block {b!r}")
    return out
