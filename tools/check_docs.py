"""The docs build's first half, which needs no Quarto: nbdev processes every notebook the way `nbdev_docs` does before
Quarto renders the site (it runs the exported and import cells, and the show_doc cells), into `_proc/`. Fails, naming
the notebook, if processing fails, if a notebook is missing from `_proc/`, or if a processed page links a figure that the
site does not hold. Run from the checkout: `python tools/check_docs.py`."""
import sys
from pathlib import Path
from nbdev.config import get_config
from nbdev.serve import proc_nbs       # the processing alone: nbdev_proc_nbs would also try to install Quarto
from fmce_nb.docs import figure_links


def main() -> int:
    nbs = get_config().nbs_path
    try: out = Path(proc_nbs(nbs, n_workers=2, force=True))
    except Exception as e:
        print(f"nbdev could not process the notebooks for the docs: {e}"); return 1
    pages = lambda root: {p.relative_to(root).as_posix() for p in root.rglob('*.ipynb') if not any(s.startswith(('.', '_')) for s in p.relative_to(root).parts)}
    problems = [f"{p}: not processed" for p in sorted(pages(nbs) - pages(out))]
    problems += [f"{p}: links a missing figure {l}" for p in sorted(pages(out)) for l in figure_links(out/p) if not (out/p).parent.joinpath(l).exists()]
    print('\n'.join(problems) or f"{len(pages(out))} notebooks processed for the docs; every figure they link exists")
    return 1 if problems else 0


if __name__ == '__main__': sys.exit(main())
