"""The README's "In your own training" section is the index notebook's, which nbdev_test runs: every Python block."""
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = '## In your own training'


def section_blocks(text: str, heading: str) -> list:
    "The ```python blocks between `heading` and the next heading of the same level."
    start = text.index(heading + '\n')
    end = text.find('\n## ', start + len(heading))
    return re.findall(r"```python\n(.*?)\n```", text[start:end if end >= 0 else None], flags=re.S)


def notebook_section_code(nb: dict, heading: str) -> list:
    "The code cells of the notebook between the markdown cell that opens `heading` and the next '## ' heading, hidden ones left out."
    out, inside = [], False
    for c in nb['cells']:
        s = ''.join(c['source']).strip('\n')
        if c['cell_type'] == 'markdown':
            if s.startswith(heading): inside = True
            elif inside and (s.startswith('## ') or '\n## ' in s): break
        elif inside and s and not s.startswith('#| hide'): out.append(s)
    return out


def test_section_blocks_are_found():
    text = "## A\n```python\na = 1\n```\n## In\nx\n```python\nb = 2\n```\n```python\nc = 3\n```\n## Next\n```python\nd\n```"
    assert section_blocks(text, '## In') == ['b = 2', 'c = 3']


def test_the_readme_section_is_the_notebook_that_nbdev_test_runs():
    readme = section_blocks((ROOT/'README.md').read_text(), HEADING)
    nb = notebook_section_code(json.loads((ROOT/'nbs'/'index.ipynb').read_text()), HEADING)
    assert len(readme) >= 3, f"expected the plain loop, the FMCS-Dataset and the Lightning blocks, found {len(readme)}"
    assert readme == nb
    assert not any('#| eval: false' in b or '#|eval' in b for b in nb)            # none is skipped by nbdev_test


def test_what_we_found_is_what_the_committed_records_say():
    "The README's findings are the index notebook's `findings` call on the records in results/cpu/, regenerated here."
    import ast
    from fmce_nb.report import findings
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    call = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code' and 'findings(' in ''.join(c['source'])]
    assert len(call) == 1 and call[0].startswith('#| echo: false')
    names = ast.literal_eval(re.search(r"findings\((\[.*?\])\)", call[0]).group(1))
    text = (ROOT/'README.md').read_text()
    start = text.index('## What we found\n')
    lines = [l for l in text[start:text.index('\n## ', start + 3)].splitlines() if l.startswith('- **')]
    assert 3 <= len(lines) <= 6                    # a line per experiment the README leads with
    assert '\n'.join(lines) == findings(names)


def test_the_claim_ledger_is_what_the_committed_records_say(tmp_path):
    "results/CLAIMS.md is `render_claims` of the records in results/cpu/, regenerated here; every row has a verdict and a reason."
    from fmce_nb.report import render_claims, VERDICTS
    fresh = render_claims(ROOT/'results'/'cpu', tmp_path/'CLAIMS.md').read_text()
    assert (ROOT/'results'/'CLAIMS.md').read_text() == fresh, "rerun `fmce-repro --profile cpu --report-only`"
    rows = [l for l in fresh.splitlines() if l.startswith('| FMCE') or l.startswith('| FR-PT')]
    assert len(rows) >= 10
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert cells[5].strip('*') in VERDICTS and cells[6], row            # the verdict, then its reason


def test_the_readme_leads_with_the_ledgers_counts():
    "The README's first findings are the ledger's counts per paper, as `claims_summary` gives them from the records."
    from fmce_nb.report import claims_summary
    text = (ROOT/'README.md').read_text()
    summary = str(claims_summary())
    assert summary and summary in text and 'results/CLAIMS.md' in text
    assert text.index(summary) < text.index('## What we found\n')
