"""The library's import graph has no cycle, counting the imports inside functions (a lazy import hides a cycle from
Python, not from a reader): each module has one job and depends only on the ones below it."""
import ast
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent/'fmce_nb'


def imports(source: str, package: str = 'fmce_nb') -> set:
    "The modules of `package` that `source` imports anywhere (top level or inside functions), by their first name."
    out = set()
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.ImportFrom) and n.module:
            if n.level == 1: out.add(n.module.split('.')[0])
            elif n.module.startswith(package + '.'): out.add(n.module.split('.')[1])
            elif n.level == 1 and n.module is None: out |= {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith(package + '.')}
    return out


def find_cycle(graph: dict):
    "A list of modules [a, b, ..., a] that import each other in a ring, or None."
    state = {}
    def visit(m, path):
        state[m] = 'open'
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 'open': return path[path.index(d):] + [d]
            if d not in state and (found := visit(d, path + [d])): return found
        state[m] = 'done'
    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])): return found


def test_the_cycle_finder_finds_a_ring_and_nothing_else():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None
    assert imports("def f():\n    from fmce_nb.runs import Run\nfrom .cqi import x\nimport fmce_nb.data") == {'runs', 'cqi', 'data'}


def test_the_library_imports_have_no_cycle():
    graph = {p.stem: imports(p.read_text()) - {p.stem, '_modidx'} for p in LIB.glob('*.py') if p.stem != '_modidx'}
    assert graph['checkpoints'] and graph['report']                       # the scan sees the imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
