"""Write README.md from nbs/index.ipynb (markdown cells as they are, code cells as fenced Python, text outputs
as plain blocks, Markdown outputs as Markdown; a cell marked `#| echo: false` gives its output alone, as Quarto
does). nbdev's own nbdev_readme needs Quarto, which is not a Python package; this needs nothing.
A link that the notebook makes from nbs/ (`](../figures/...`, `](images/...`) is made from the checkout's root here."""
import json
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text())
parts = []
for c in nb['cells']:
    src = ''.join(c['source']).strip('\n')
    if c['cell_type'] == 'markdown': parts.append(src.replace('](../', '](').replace('](images/', '](nbs/images/'))
    elif c['cell_type'] == 'code' and src and not src.startswith('#| hide'):
        shown = not src.startswith('#| echo: false')                 # echo: false shows the output alone, as Quarto does
        if shown: parts.append(f"```python\n{src}\n```")
        for o in c.get('outputs', []):
            if o.get('name') == 'stderr': continue                    # warnings and progress, not results
            if 'text/markdown' in o.get('data', {}):                  # Markdown output (a table, findings) as Markdown
                parts.append(''.join(o['data']['text/markdown']).strip('\n').replace('](../', '](')); continue
            if 'image/png' in o.get('data', {}): continue                 # a figure: shown in the notebook, not here
            text = ''.join(o.get('text', '') or o.get('data', {}).get('text/plain', ''))
            if text.strip(): parts.append(f"```\n{text.rstrip()}\n```")
readme = "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n"
(root/'README.md').write_text(readme + '\n\n'.join(parts) + '\n')
