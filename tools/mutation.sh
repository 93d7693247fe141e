#!/usr/bin/env bash
# Mutation testing of the rules the papers fix (on demand, not in CI): mutmut changes one thing at a time in the
# functions that implement them and runs the fast tests against each change (configured in pyproject.toml); a
# change that no test notices "survives". Writes tools/mutation_summary.txt; tools/mutation_equivalent.md says why
# each kind of surviving change is equivalent or is not a rule.
# Usage: bash tools/mutation.sh          the rule functions (about 5 minutes on 2 cores)
#        bash tools/mutation.sh --all    every function of cqi.py, fmcs.py, fmce_net.py, train.py and ral.py
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "mutmut==3.8.1"
# with more threads, forked test processes hung until mutmut timed them out
export MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RULES=(
  'fmce_nb.cqi.x_smooth__*' 'fmce_nb.cqi.x_cqi__*' 'fmce_nb.cqi.x_convergence_epoch__*' 'fmce_nb.cqi.x_epoch_markers__*'
  'fmce_nb.cqi.x_paper_mu__*'
  'fmce_nb.fmcs.x_plan_epoch__*' 'fmce_nb.fmcs.x__batches__*' 'fmce_nb.fmcs.xǁFMCSDataǁmaps__*' 'fmce_nb.fmcs.x_paper_split__*'
  'fmce_nb.fmcs.x_image_split__*' 'fmce_nb.fmcs.x__pairs_of__*' 'fmce_nb.fmcs.x_all_pairs__*'
  'fmce_nb.fmce_net.xǁFMCENetǁ*' 'fmce_nb.fmce_net.xǁHalvingMaxPoolǁ*' 'fmce_nb.fmce_net.x_metrics__*'
  'fmce_nb.train.x_train_epoch__*' 'fmce_nb.train.x_evaluate__*'
  'fmce_nb.ral.x_ral_loss__*' 'fmce_nb.ral.x_check_raf__*'
)
[ "${1:-}" = --all ] && RULES=()
rm -rf mutants
mutmut run --max-children "${MUTMUT_CHILDREN:-2}" "${RULES[@]}" > /tmp/fmce_mutmut.log 2>&1 || true
{ echo "# mutmut $(python3 -m pip show mutmut | sed -n 's/^Version: //p') on commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)," \
       "scope: ${1:-rule functions}; tests: pytest_add_cli_args_test_selection in pyproject.toml"
  echo "# killed $(grep -c '^🎉' /tmp/fmce_mutmut.log), survived $(grep -c '^🙁' /tmp/fmce_mutmut.log)," \
       "timed out $(grep -c '^⏰' /tmp/fmce_mutmut.log), no test reaches $(grep -c '^🫥' /tmp/fmce_mutmut.log)"
  echo "# survivors per function (why each kind survives: tools/mutation_equivalent.md):"
  grep '^🙁' /tmp/fmce_mutmut.log | sed -E 's/^🙁 //; s/__mutmut_[0-9]+$//' | sort | uniq -c | sort -rn
  echo "# survivors:"
  grep '^🙁' /tmp/fmce_mutmut.log | sed -E 's/^🙁 //'; } > tools/mutation_summary.txt
cat tools/mutation_summary.txt
