"""The docs site's files (nbdev_docs renders them with Quarto, which our machines lack): its config and styles are
committed, and the sidebar lists every notebook once, the experiments in the papers' order."""
import configparser, json, re
from pathlib import Path
from fmce_nb.docs import figure_links

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
PAPER_ORDER = ['table1_markers', 'table2_fmcs', 'fmcs_scale', 'fig4_gradcam', 'fmcs_transfer', 'fmcs_module_map', 'ral_raf', 'frpt_posttrain']


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


def test_every_figure_a_page_links_exists_inside_the_site():
    "Quarto renders nbs/ alone: a figure a notebook links must exist, below nbs/ (../figures/ is outside the site)."
    for nb in NBS.rglob('*.ipynb'):
        for link in figure_links(nb):
            target = (nb.parent/link).resolve()
            assert target.exists(), f"{nb.name} links a missing figure {link}"
            assert NBS.resolve() in target.parents, f"{nb.name} links {link}, outside nbs/: the docs site cannot show it"


def test_the_readme_figures_exist_and_the_home_figure_is_the_records():
    for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (ROOT/'README.md').read_text()):
        assert (ROOT/link).exists(), link
    home = NBS/'images'/'fig3_convergence.png'
    made = ROOT/'figures'/'cpu'/'table1-mnist5k-shufflenet_v2_x1_0_smallstem-32px-seed0-4aa271f9-fig3_convergence.png'
    assert home.read_bytes() == made.read_bytes(), f"copy {made.relative_to(ROOT)} to {home.relative_to(ROOT)}: the report redrew it"


# every library module (the experiments' modules aside): each public parameter (but *args and **kwargs) has its comment (docments)
DOCUMENTED = sorted(f"fmce_nb.{p.stem}" for p in (ROOT/'fmce_nb').glob('*.py') if not p.stem.startswith('_'))


def undocumented(module) -> list:
    "'name.param' for each parameter of a public function, class or public method of `module` that has no docments comment."
    import inspect
    from fastcore.docments import docments
    def missing(name, f):
        try: d = docments(f, full=True)
        except ValueError: return []                                 # no signature (an exception class without __init__)
        var = {k for k, p in inspect.signature(f).parameters.items() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        return [f"{name}.{k}" for k, v in d.items() if k not in ('return', 'self', 'cls', *var) and not v['docment']]
    out = []
    for n in module.__all__:
        o = getattr(module, n)
        if inspect.isfunction(o): out += missing(n, o)
        if not inspect.isclass(o): continue
        out += missing(n, o)
        for m, f in vars(o).items():                                  # its own public methods (@patch-ed ones included)
            f = f.__func__ if isinstance(f, (staticmethod, classmethod)) else f
            if not m.startswith('_') and inspect.isfunction(f): out += missing(f"{n}.{m}", f)
    return out


def test_undocumented_finds_a_parameter_without_its_comment(tmp_path):
    import importlib.util
    (tmp_path/'toy.py').write_text("__all__ = ['f', 'g', 'C']\ndef f(a,  # the a\n      b): pass\ndef g(c,  # the c\n     ): pass\n"
                                   "class C:\n    def __init__(self, d): pass\n    def run(self, e,  # the e\n            h): pass\n"
                                   "    def _hidden(self, i): pass\n")
    spec = importlib.util.spec_from_file_location('toy', tmp_path/'toy.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    assert undocumented(m) == ['f.b', 'C.d', 'C.run.h']


def test_public_parameters_have_their_comment_so_the_docs_render_a_table():
    import importlib
    assert {m: undocumented(importlib.import_module(m)) for m in DOCUMENTED} == {m: [] for m in DOCUMENTED}
