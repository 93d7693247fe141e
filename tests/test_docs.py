"""The docs site's files (nbdev_docs renders them with Quarto, which our machines lack): its config and styles are
committed, and the sidebar lists every notebook once, the experiments in the papers' order."""
import configparser, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
PAPER_ORDER = ['table1_markers', 'table2_fmcs', 'fig4_gradcam', 'fmcs_transfer', 'fmcs_module_map', 'ral_raf', 'frpt_posttrain']


def sidebar_entries(text: str) -> list:
    "The notebooks a sidebar.yml lists, in its order."
    return re.findall(r"^\s*- ([\w/]+\.ipynb)\s*$", text, flags=re.M)


def test_sidebar_entries_are_read_in_order():
    assert sidebar_entries("contents:\n  - b.ipynb\n  - section: x\n    contents:\n      - experiments/a.ipynb\n") == ['b.ipynb', 'experiments/a.ipynb']


def test_the_sidebar_lists_every_notebook_once_and_the_experiments_in_paper_order():
    listed = sidebar_entries((NBS/'sidebar.yml').read_text())
    on_disk = sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    assert [e.removeprefix('experiments/').removesuffix('.ipynb') for e in listed if e.startswith('experiments/')] == PAPER_ORDER


def test_nbdev_keeps_the_sidebar_and_quarto_finds_its_files():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    assert cfg['DEFAULT']['custom_sidebar'] == 'True'              # else nbdev_docs overwrites sidebar.yml alphabetically
    quarto = (NBS/'_quarto.yml').read_text()
    assert 'css: styles.css' in quarto and (NBS/'styles.css').exists()
    assert 'metadata-files: [nbdev.yml, sidebar.yml]' in quarto and (NBS/'nbdev.yml').exists()
