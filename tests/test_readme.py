"""The README's "In your own training" section runs as written: every Python block, in order, in one namespace."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent/'README.md'


def section_blocks(text: str, heading: str) -> list:
    "The ```python blocks between `heading` and the next heading of the same level."
    start = text.index(heading + '\n')
    end = text.find('\n## ', start + len(heading))
    return re.findall(r"```python\n(.*?)\n```", text[start:end if end >= 0 else None], flags=re.S)


def test_section_blocks_are_found():
    text = "## A\n```python\na = 1\n```\n## In\nx\n```python\nb = 2\n```\n```python\nc = 3\n```\n## Next\n```python\nd\n```"
    assert section_blocks(text, '## In') == ['b = 2', 'c = 3']


def test_own_training_section_runs_as_written(tmp_path, monkeypatch):
    blocks = section_blocks(README.read_text(), '## In your own training')
    assert len(blocks) >= 3, f"expected the plain loop, the FMCS-Dataset and the Lightning blocks, found {len(blocks)}"
    monkeypatch.chdir(tmp_path)                     # anything a block writes lands in pytest's folder
    ns = {'__name__': '__readme__'}
    for i, code in enumerate(blocks):
        exec(compile(code, f'README.md, block {i + 1} of "In your own training"', 'exec'), ns)
    # what the blocks promise: the markers' checkpoints only, an FMCS-Dataset of K phases, an FMCE-Net above chance
    assert ns['ckpts'].saved_epochs() == list(ns['markers'].markers)
    assert ns['cb'].checkpoints.saved_epochs() == list(ns['cb'].markers.markers)
    assert (ns['cb'].checkpoints.folder/'markers.json').is_file()
    assert ns['fmcs'].K == 5 and ns['accuracy'] > 1 / ns['fmcs'].K
