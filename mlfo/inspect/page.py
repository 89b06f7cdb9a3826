"""The ``mlfo inspect`` page: one self-contained HTML file (inline CSS and a few lines of
JS, no CDN, opens from disk) over the thumbnails and figures in ``assets/``.

Everything is rendered here, in Python, from a plain dict (``inspect.json`` beside the
page holds the same numbers); the JS only switches encoder tabs and shows a thumbnail when
the pointer is over a point of the map.
"""

from __future__ import annotations

from html import escape

# matplotlib's tab20, so the page's class colours read like the PNG figures'
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
UNLABELLED = "#4a6fa5"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0 0 4px;font-size:20px}
header p{margin:2px 0;color:#c9d1e0;font-size:13px}main{padding:8px 24px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e0e4ea;border-radius:8px;padding:12px 16px;margin:14px 0}
h2{font-size:16px;margin:4px 0 10px}h3{font-size:14px;margin:12px 0 6px;color:#414b5e}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{padding:4px 10px;border-bottom:1px solid #eceff3;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#5d6778;font-size:12.5px;max-width:980px}
.tabs{display:flex;gap:6px;margin:14px 0 0}.tabs button{border:1px solid #c9d0db;background:#fff;border-radius:6px;
padding:6px 14px;cursor:pointer;font-size:14px}.tabs button.on{background:#1d2330;color:#fff;border-color:#1d2330}
.panel{display:none}.panel.on{display:block}.row{display:flex;gap:8px;align-items:flex-start;margin:8px 0;flex-wrap:wrap}
figure{margin:0;width:84px;text-align:center;font-size:11px;color:#414b5e}figure img{width:80px;height:80px;
border-radius:4px;border:2px solid #dde2ea;image-rendering:auto;background:#222}figure.q img{border-color:#1d2330}
figure figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.sim{font-weight:600;color:#1d2330}
.same img{border-color:#2ca02c}.other img{border-color:#d62728}.missing{display:inline-block;width:80px;height:80px;
background:#ccd;border-radius:4px}.mapwrap{display:flex;gap:16px;flex-wrap:wrap}svg.map{background:#fbfcfd;
border:1px solid #e0e4ea;border-radius:6px}svg.map circle{stroke:#fff;stroke-width:.6}svg.map circle:hover{stroke:#000;stroke-width:1.5}
.legend{font-size:12px;columns:2;max-width:380px}.legend span{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:5px}
#tip{position:fixed;pointer-events:none;display:none;background:#fff;border:1px solid #aab;border-radius:6px;padding:4px;
font-size:11px;box-shadow:0 2px 8px rgba(0,0,0,.2);z-index:9}#tip img{width:112px;height:112px;display:block}
details{margin:14px 0 4px}summary{cursor:pointer;font-size:14px;color:#414b5e}
.bad{color:#b3261e;font-weight:600}.good{color:#1e7a34;font-weight:600}
"""

JS = """
document.querySelectorAll('.tabs button').forEach(function(b){b.addEventListener('click',function(){
document.querySelectorAll('.tabs button').forEach(function(x){x.classList.toggle('on',x===b)});
document.querySelectorAll('.panel').forEach(function(p){p.classList.toggle('on',p.id===b.dataset.panel)});});});
var tip=document.getElementById('tip'),tipImg=tip.querySelector('img'),tipText=tip.querySelector('div');
document.querySelectorAll('svg.map circle').forEach(function(c){
c.addEventListener('mouseenter',function(){if(c.dataset.thumb){tipImg.src=c.dataset.thumb;tipImg.style.display='block';}
else{tipImg.style.display='none';}tipText.textContent=c.dataset.name;tip.style.display='block';});
c.addEventListener('mousemove',function(e){tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px';});
c.addEventListener('mouseleave',function(){tip.style.display='none';});});
"""


def class_colour(label: int) -> str:
    return UNLABELLED if label < 0 else PALETTE[label % len(PALETTE)]


def _figure(video: dict, caption: str, css: str = "") -> str:
    title = escape(f"{video['name']}" + (f" ({video['label']})" if video.get("label") else ""))
    img = (f'<img src="{escape(video["thumb"])}" alt="{title}">' if video.get("thumb")
           else '<span class="missing" title="no thumbnail: the video did not decode"></span>')
    return f'<figure class="{css}" title="{title}">{img}<figcaption>{caption}</figcaption></figure>'


def _health_table(encoders: list[dict]) -> str:
    names = [escape(e["name"]) for e in encoders]
    head = "<tr><th>level</th>" + "".join(f"<th>{m}<br><small>{n}</small></th>" for m in
                                          ("RankMe", "alignment", "uniformity") for n in names) + "</tr>"
    rows = []
    for level in encoders[0]["health"]:
        cells = [f"<td>{level} <small>({encoders[0]['health'][level]['dim']}-d)</small></td>"]
        for metric, fmt in (("rankme", "{:.1f}"), ("alignment", "{:.3f}"), ("uniformity", "{:.3f}")):
            cells += [f"<td>{fmt.format(e['health'][level].get(metric, float('nan')))}</td>" for e in encoders]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _health_section(page: dict) -> str:
    n = page["encoders"][0]["health"]["high"]["n"]
    return (
        "<section><h2>Embedding health (no labels needed)</h2>" + _health_table(page["encoders"]) +
        f'<p class="note"><b>RankMe</b> (Garrido et al. 2023): effective rank of the {n} videos\' features, exp of '
        "the entropy of the normalised singular values; 1 = everything on one direction (collapse), at most "
        "min(videos, dimensions). <b>Alignment</b> (Wang &amp; Isola 2020): mean squared distance between the "
        "L2-normalised features of two disjoint view sets of each video (its even and its odd clips); lower = "
        "views agree. <b>Uniformity</b>: log of the mean Gaussian potential over pairs of videos; lower = more "
        "spread on the sphere. Compare an encoder with its random-init twin, not with another architecture.</p>"
        f'<img src="{escape(page["spectrum"])}" alt="singular value spectra" style="max-width:100%"></section>'
    )


def _map_svg(enc: dict, videos: list[dict], size: int = 620) -> str:
    pad, dots = 12, []
    for row, (x, y) in zip(enc["map"]["rows"], enc["map"]["xy"]):
        v = videos[row]
        thumb = f' data-thumb="{escape(v["thumb"])}"' if v.get("thumb") else ""
        name = escape(v["name"] + (f" ({v['label']})" if v.get("label") else ""))
        cx, cy = pad + x * (size - 2 * pad), pad + (1 - y) * (size - 2 * pad)
        dots.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{class_colour(v["label_id"])}" '
                    f'data-name="{name}"{thumb}></circle>')
    return f'<svg class="map" width="{size}" height="{size}" viewBox="0 0 {size} {size}">{"".join(dots)}</svg>'


def _legend(page: dict) -> str:
    if not page["classes"]:
        return '<p class="note">No labels: every point has one colour.</p>'
    groups = page.get("groups") or {}
    items = [f'<div><span style="background:{class_colour(i)}"></span>{escape(c)}'
             f'{" <small>(" + escape(groups[c]) + ")</small>" if c in groups else ""}</div>'
             for i, c in enumerate(page["classes"][:40])]
    return '<div class="legend">' + "".join(items) + "</div>"


def _galleries(enc: dict, videos: list[dict], labelled: bool) -> str:
    rows = []
    for g in enc["galleries"]:
        q = videos[g["video"]]
        cells = [_figure(q, "query" + ("" if g["in_collection"] else " (outside)"), "q")]
        for row, sim in g["neighbours"]:
            v = videos[row]
            css = ("same" if v["label_id"] == q["label_id"] else "other") if labelled and q["label_id"] >= 0 else ""
            cells.append(_figure(v, f'<span class="sim">{sim:.3f}</span> {escape(v["name"])}', css))
        rows.append('<div class="row">' + "".join(cells) + "</div>")
    note = (' Border: <span class="good">green</span> = same class as the query, '
            '<span class="bad">red</span> = another class.' if labelled else "")
    return (f'<h3>Nearest neighbours</h3><p class="note">Each row: a query, then its {enc["k"]} most similar '
            f"videos of the collection by cosine similarity of the features.{note}</p>" + "".join(rows))


def _duplicates(enc: dict, videos: list[dict], threshold: float, shown: int = 20, width: int = 12) -> str:
    groups = enc["duplicates"]
    head = (f"<details><summary><b>Near-duplicate groups</b>: {len(groups)} group(s), "
            f"{sum(len(g['rows']) for g in groups)} videos (click to show)</summary>"
            f'<p class="note">Each group: a video, then the videos whose features have cosine similarity &ge; '
            f"{threshold} with it. An untrained or collapsed encoder puts most videos this close; compare with "
            "its embedding health above.</p>")
    rows = []
    for g in groups[:shown]:
        cells = [_figure(videos[r], escape(videos[r]["name"])) for r in g["rows"][:width]]
        more = f'<p class="note">+{len(g["rows"]) - width} more</p>' if len(g["rows"]) > width else ""
        rows.append(f'<div class="row"><p class="note" style="width:90px">{len(g["rows"])} videos, lowest '
                    f'similarity {g["min_similarity"]:.3f}</p>' + "".join(cells) + more + "</div>")
    if len(groups) > shown:
        rows.append(f'<p class="note">{len(groups) - shown} more groups in inspect.json</p>')
    return head + "".join(rows) + "</details>"


def _panel(i: int, enc: dict, page: dict) -> str:
    videos = page["videos"]
    shown = len(enc["map"]["rows"])
    sub = f" ({shown} of {page['n_videos']} videos, seeded subsample)" if shown < page["n_videos"] else ""
    return (
        f'<div class="panel{" on" if i == 0 else ""}" id="p{i}"><section><h2>{escape(enc["name"])}</h2>'
        f"<h3>Map of the collection: t-SNE of the features{sub}</h3>"
        '<p class="note">Point the mouse at a video to see it.</p><div class="mapwrap">'
        + _map_svg(enc, videos) + _legend(page) + "</div>"
        + _galleries(enc, videos, page["labelled"]) + _duplicates(enc, videos, page["threshold"])
        + "</section></div>"
    )


def render(page: dict) -> str:
    """The whole page from the ``mlfo.inspect.api`` summary dict."""
    tabs = "".join(f'<button class="{"on" if i == 0 else ""}" data-panel="p{i}">{escape(e["name"])}</button>'
                   for i, e in enumerate(page["encoders"]))
    facts = "".join(f"<p>{escape(line)}</p>" for line in page["facts"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{escape(page["title"])}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{escape(page['title'])}</h1>{facts}</header><main>"
        + _health_section(page) + f'<div class="tabs">{tabs}</div>'
        + "".join(_panel(i, e, page) for i, e in enumerate(page["encoders"]))
        + '</main><div id="tip"><img alt=""><div></div></div>'
        + f"<script>{JS}</script></body></html>"
    )
