#!/usr/bin/env bash
# Mutation testing of the rules the papers fix (on demand, not in CI): mutmut changes one thing at a time in
# fmce_nb/cqi.py, fmcs.py, fmce_net.py and train.py (configured in pyproject.toml) and runs the fast tests against
# each change; a change that no test notices "survives". Writes tools/mutation_summary.txt.
# Usage: bash tools/mutation.sh        (on 2 cores: tens of minutes; a stopped run resumes where it left off)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "mutmut==3.8.1"
export MPLBACKEND=Agg
mutmut run --max-children "${MUTMUT_CHILDREN:-2}" || true
{ echo "# mutmut $(python3 -m pip show mutmut | sed -n 's/^Version: //p') on $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
  mutmut results --all true 2>/dev/null | awk '{print $NF}' | sort | uniq -c | sed 's/^/# /'
  echo "# surviving and untested mutants (see tools/mutation_equivalent.md for those that are equivalent):"
  mutmut results 2>/dev/null; } > tools/mutation_summary.txt
cat tools/mutation_summary.txt
