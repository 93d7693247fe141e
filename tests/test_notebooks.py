"""The committed notebooks as a reader sees them: outputs without temporary paths, commit or weights hashes, timings or
17-digit floats; code cells of at most 40 lines, export cells of one public definition; each experiment in one notebook that
the registry names."""
import ast, json, re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parent.parent/'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
BAD_OUTPUT = {'a temporary path': re.compile(r'/tmp/|/var/folders/'),
              'a commit hash': re.compile(r'\b[0-9a-f]{40}\b'),
              'a float with 12 or more decimals': re.compile(r'\d\.\d{12,}'),
              'a timing': re.compile(r'\(\d+(\.\d+)?s\)|\b\d+\.\d+s\b|\b\d+(\.\d+)? s\b'),
              'a weights hash': re.compile(r'\b[0-9a-f]{12}\b')}


def cells(path, kind='code'):
    return [(i, ''.join(c['source']), c) for i, c in enumerate(json.loads(path.read_text())['cells']) if c['cell_type'] == kind]


def output_text(cell) -> str:
    out = []
    for o in cell.get('outputs', []):
        out.append(''.join(o.get('text', '')))
        for k in ('text/plain', 'text/markdown', 'text/html'): out.append(''.join(o.get('data', {}).get(k, '')))
    return '\n'.join(out)


def export_stats(path) -> tuple:
    "(code cells over 40 lines, export cells with more than one public definition)."
    long = multi = 0
    for _, s, _ in cells(path):
        long += len(s.splitlines()) > 40
        if not re.match(r'\s*#\|\s*export\b', s): continue
        public = [n for n in ast.parse(s).body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith('_')]
        multi += len(public) > 1
    return long, multi


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_committed_outputs_are_clean(path):
    for i, s, c in cells(path):
        text = output_text(c)
        for what, pat in BAD_OUTPUT.items():
            m = pat.search(text)
            assert not m, f"{path.name}, cell {i}: its output shows {what}: ...{text[max(0, m.start() - 60):m.end() + 20]!r}"
        if re.match(r'\s*#\|\s*(slow|gpu)\b', s): assert not c.get('outputs'), f"{path.name}, cell {i}: a slow cell's output is committed"


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_cells_are_short_and_export_cells_hold_one_public_definition(path):
    long, multi = export_stats(path)
    assert long == 0, f"{path.name}: {long} code cells over 40 lines; split them into their ideas"
    assert multi == 0, f"{path.name}: {multi} export cells with several public definitions; give each its own cell"


def test_export_stats_counts_by_hand(tmp_path):
    nb = {'cells': [{'cell_type': 'code', 'source': '#| export\ndef a(): pass\ndef b(): pass\ndef _c(): pass'},
                    {'cell_type': 'code', 'source': '#| export\n' + 'x = 1\n' * 40},
                    {'cell_type': 'code', 'source': 'def a(): pass\ndef b(): pass\n' + 'y = 2\n' * 40},
                    {'cell_type': 'markdown', 'source': 'x\n' * 50}]}
    (tmp_path/'n.ipynb').write_text(json.dumps(nb))
    assert export_stats(tmp_path/'n.ipynb') == (2, 1)


def test_every_experiment_has_one_home():
    from fmce_nb.experiment import REGISTRY, experiments
    registry = experiments()
    on_disk = {p.stem for p in (NBS/'experiments').glob('*.ipynb')}
    assert set(REGISTRY) == on_disk, f"notebooks and registry differ: {set(REGISTRY) ^ on_disk}"
    for stem in REGISTRY:
        code = cells(NBS/'experiments'/f'{stem}.ipynb')
        assert any(s.strip() == f'#| default_exp experiments.{stem}' for _, s, _ in code), stem
        tagged = [i for i, s, c in code if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, stem
        after = next(s for i, s, _ in code if i > tagged[0])
        assert f"check_parameters(globals(), '{stem}.ipynb')" in after, f"{stem}: the cell after the parameters must check them"
    assert [ex.notebook for ex in registry.values()] == [f'{s}.ipynb' for s in REGISTRY]
