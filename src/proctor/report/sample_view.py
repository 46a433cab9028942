"""The report's samples, loaded lazily: one gzip'd JSON block in the page, unpacked by the
browser (DecompressionStream) and drawn only when a dataset is opened or a filter is used.

A full C-Eval run's prompts repeat their few-shot examples subject by subject, so the page
stays small (under 1 MB, 3.6 MB as HTML rows) and still needs no other file and no network.
Search and filters (text, model, dataset, status: wrong/correct/failed, rule) run over all
samples at once.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from typing import Any, Mapping, Sequence, TextIO

SAMPLES_ID = "proctor-samples"
MAX_MATCHES = 500  # rows a filter shows at once (the count says how many matched)

TOOLBAR = (
    '<div class="filters" id="sample-filters">'
    '<input type="search" id="f-text" placeholder="search id, prompt, output, answer">'
    '<select id="f-model"><option value="">every model</option></select>'
    '<select id="f-dataset"><option value="">every dataset</option></select>'
    '<select id="f-status"><option value="">every status</option><option value="wrong">wrong only</option>'
    '<option value="correct">correct only</option><option value="failed">failed only</option></select>'
    '<select id="f-rule"><option value="">every rule</option></select>'
    ' <span class="note" id="f-count"></span></div><div id="f-results"></div>'
)

CSS = """
.filters{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}.filters input{min-width:260px}
.filters select,.filters input{font:13px system-ui,sans-serif;padding:2px 4px}
"""

# The renderer: rows are [number, id, prompt, output, prediction, target, status css, status text,
# rule, conversation turns ([role, text] pairs, or null)].
SCRIPT = r"""
(() => {
  const holder = document.getElementById('proctor-samples');
  if (!holder) return;
  let data = null;
  const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
  const turns = t => `<details><summary>conversation (${t.filter(m => m[0] === 'user').length} user turns)` +
    `</summary>${t.map(m => `<div class="msg ${esc(m[0])}"><b>${esc(m[0])}</b><pre>${esc(m[1])}</pre></div>`).join('')}` +
    '</details>';
  const row = r => `<tr class="${esc(r[6])}"><td>${r[0]}</td><td>${esc(r[1])}</td>` +
    `<td>${r[9] ? turns(r[9]) :
      `<details><summary>prompt (${String(r[2]).length} chars)</summary><pre>${esc(r[2])}</pre></details>`}</td>` +
    `<td><pre>${esc(r[3])}</pre></td><td>${esc(r[4])}</td><td>${esc(r[5])}</td>` +
    `<td class="status">${esc(r[7])}</td></tr>`;
  const table = rows => '<table class="samples"><colgroup><col style="width:3em"><col style="width:9em"><col>' +
    '<col><col style="width:6em"><col style="width:5em"><col style="width:9em"></colgroup><thead><tr><th>#</th>' +
    '<th>id</th><th>prompt</th><th>output</th><th>prediction</th><th>target</th><th>status</th></tr></thead>' +
    `<tbody>${rows.map(row).join('')}</tbody></table>`;
  const fill = d => {
    const s = data.sections[Number(d.dataset.section)];
    const slot = d.querySelector('.rows');
    if (s && slot && !slot.dataset.done) { slot.innerHTML = table(s.rows); slot.dataset.done = '1'; }
  };
  const options = (id, values) => {
    const select = document.getElementById(id);
    [...new Set(values)].filter(v => v).sort().forEach(v => {
      const o = document.createElement('option'); o.value = v; o.textContent = v; select.appendChild(o);
    });
  };
  const filter = () => {
    const text = document.getElementById('f-text').value.trim().toLowerCase();
    const want = Object.fromEntries(['model', 'dataset', 'status', 'rule'].map(
      k => [k, document.getElementById('f-' + k).value]));
    const active = text || Object.values(want).some(v => v);
    const out = document.getElementById('f-results'), count = document.getElementById('f-count');
    document.querySelectorAll('details.ds').forEach(d => { d.hidden = !!active; });
    if (!active) { out.innerHTML = ''; count.textContent = ''; return; }
    const hits = [];
    data.sections.forEach(s => {
      if ((want.model && s.model !== want.model) || (want.dataset && s.dataset !== want.dataset)) return;
      s.rows.forEach(r => {
        if (want.status && r[6] !== want.status) return;
        if (want.rule && r[8] !== want.rule) return;
        if (text && ![r[1], r[2], r[3], r[4]].some(v => String(v ?? '').toLowerCase().includes(text))) return;
        hits.push([s.model + ' / ' + s.dataset + ' #' + r[0], ...r.slice(1)]);
      });
    });
    count.textContent = `${hits.length} sample(s) match` + (hits.length > MAX ? `, the first ${MAX} shown` : '');
    out.innerHTML = hits.length ? table(hits.slice(0, MAX)) : '';
  };
  const MAX = Number(holder.dataset.max || 500);
  const bytes = Uint8Array.from(atob(holder.textContent.trim()), c => c.charCodeAt(0));
  new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).json().then(d => {
    data = d;
    options('f-model', data.sections.map(s => s.model));
    options('f-dataset', data.sections.map(s => s.dataset));
    options('f-rule', data.sections.flatMap(s => s.rows.map(r => r[8])));
    document.querySelectorAll('details.ds').forEach(d => {
      if (d.open) fill(d);
      d.addEventListener('toggle', () => { if (d.open) fill(d); });
    });
    ['f-text', 'f-model', 'f-dataset', 'f-status', 'f-rule'].forEach(
      id => document.getElementById(id).addEventListener('input', filter));
    document.documentElement.dataset.samples = 'ready';
  });
})();
"""


class SamplesPacker:
    """The samples as base64 of gzip'd JSON (deterministic: no timestamp in the gzip header),
    written to `out` one section at a time: a run of 25k questions would otherwise hold every
    section's rows, their JSON and its compressed copy at once (350 MB)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._zip = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream, mtime 0
        self._left = b""  # compressed bytes not yet written (fewer than 3: base64 takes 3 at a time)
        self._sections = 0
        self._feed(b'{"sections":[')

    def add(self, section: Mapping[str, Any]) -> None:
        raw = json.dumps(section, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._feed(b"," + raw if self._sections else raw)
        self._sections += 1

    def close(self) -> None:
        self._feed(b"]}")
        self._write(self._zip.flush(), last=True)

    def _feed(self, raw: bytes) -> None:
        self._write(self._zip.compress(raw))

    def _write(self, data: bytes, last: bool = False) -> None:
        data = self._left + data
        cut = len(data) if last else len(data) - len(data) % 3
        self._out.write(base64.b64encode(data[:cut]).decode("ascii"))
        self._left = data[cut:]


def encode_samples(sections: Sequence[Mapping[str, Any]]) -> str:
    """The samples as base64 of gzip'd JSON (what SamplesPacker writes)."""
    out = io.StringIO()
    packer = SamplesPacker(out)
    for section in sections:
        packer.add(section)
    packer.close()
    return out.getvalue()


def decode_samples(page: str) -> dict[str, Any]:
    """The samples of a written report.html (for tests and tools): what `encode_samples` packed."""
    import re

    match = re.search(rf'<script type="application/octet-stream" id="{SAMPLES_ID}"[^>]*>([^<]*)</script>', page)
    if match is None:
        return {"sections": []}
    return json.loads(gzip.decompress(base64.b64decode(match.group(1))).decode("utf-8"))


# The data block opens and closes around the packed samples; the renderer follows it.
BLOCK_OPEN = f'<script type="application/octet-stream" id="{SAMPLES_ID}" data-max="{MAX_MATCHES}">'
BLOCK_CLOSE = f"</script><script>{SCRIPT}</script>"


def samples_block(sections: Sequence[Mapping[str, Any]]) -> str:
    """The data block and the renderer (the data is inert until the script reads it)."""
    return f"{BLOCK_OPEN}{encode_samples(sections)}{BLOCK_CLOSE}"
