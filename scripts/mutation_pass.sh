#!/usr/bin/env bash
# A mutation pass (mutmut) over the code behind the reported numbers, driven by the fast tests that cover it.
#
#   scripts/mutation_pass.sh step_rule                 # one preset (step_rule | losses | metrics | evaluation | all)
#   scripts/mutation_pass.sh facelift/losses/image_terms.py --tests "tests/test_losses.py"   # a file, chosen tests
#
# mutmut (pip install mutmut, or pip install -e ".[test]") mutates one operator, constant or call at a time and
# runs the tests that reach the mutated function: a mutant the tests still pass on "survived". The pass runs in a
# scratch copy of the working tree (MUTATION_DIR, default /tmp/facelift-mutation; the checkout is not touched),
# with ../shared linked in for the fixtures, and prints mutmut's counts and every survivor's diff
# (`mutmut show NAME` in the copy). MUTATION_JOBS (default 1) mutants run at a time; MUTATION_TIMEOUT (default
# 3600 s) bounds the whole run. Slow on 2 cores: pass one preset or one file at a time.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTATION_DIR:-/tmp/facelift-mutation}"
jobs="${MUTATION_JOBS:-1}"

declare -A FILES=(
  [step_rule]="facelift/systems/step_rule.py"
  [losses]="facelift/losses/image_terms.py facelift/losses/combined.py facelift/losses/geometry_terms.py facelift/losses/lpips_loss.py facelift/losses/perceptual.py facelift/losses/foreground.py"
  [metrics]="facelift/systems/metrics.py facelift/evaluation/foreground.py"
  [evaluation]="facelift/evaluation/report.py facelift/evaluation/curves.py"
)
declare -A TESTS=(  # the fast tests that pin each target (-m "not slow" is applied too)
  [step_rule]="tests/test_optim.py tests/test_step_rule_values.py tests/test_step_speed.py"
  [losses]="tests/test_losses.py tests/test_losses_reference.py tests/test_foreground_losses.py"
  [metrics]="tests/test_image_metrics.py tests/test_metrics_reference.py tests/test_foreground_reference.py"
  [evaluation]="tests/test_evaluation.py tests/test_metrics_reference.py"
)

targets=() tests=""
while (($#)); do
  case "$1" in
    --tests) tests="$2"; shift 2 ;;
    all) targets+=(step_rule losses metrics evaluation); shift ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || { echo "usage: $0 PRESET|FILE... [--tests 'tests/a.py ...']" >&2; exit 2; }
files="" default_tests=""
for t in "${targets[@]}"; do
  if [[ -n "${FILES[$t]:-}" ]]; then files+=" ${FILES[$t]}"; default_tests+=" ${TESTS[$t]}"
  elif [[ -f "$repo/$t" ]]; then files+=" $t"
  else echo "error: $t is neither a preset (${!FILES[*]}) nor a file under $repo" >&2; exit 2; fi
done
tests="${tests:-$default_tests}"
[[ -n "${tests// }" ]] || { echo "error: no tests for $files; give --tests" >&2; exit 2; }
command -v mutmut >/dev/null || { echo "error: mutmut not installed; pip install mutmut" >&2; exit 2; }

rm -rf "$work" && mkdir -p "$work"
(cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$work"
ln -s "$(cd "$repo/.." && pwd)/shared" "$work/shared"  # mutmut runs the tests in mutants/: ../shared from there
quote() { local out="" x; for x in "$@"; do out+="\"$x\", "; done; echo "[${out%, }]"; }
cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]  # written by scripts/mutation_pass.sh
source_paths = ["facelift"]
only_mutate = $(quote $files)
also_copy = ["conf", "scripts", "train.py", "eval.py", "infer.py", "shared"]
pytest_add_cli_args_test_selection = $(quote $tests)
process_isolation = "forkserver"  # torch's thread pools do not survive a fork of a process that used them
timeout_constant = 60.0  # seconds added to 15 x the tests' clean time: a forked run re-collects and rebuilds fixtures
pytest_add_cli_args = ["-q", "-x", "--tb=no", "-n", "0", "-m", "not slow", "-p", "no:cacheprovider"]  # in-process; stop at the first kill
EOF
echo "mutating:$files"
echo "tests:   $tests"
cd "$work"
unset PYTHONPATH  # the mutated copy must be what the tests import
status=0
timeout "${MUTATION_TIMEOUT:-3600}" mutmut run --max-children "$jobs" > mutmut_run.log 2>&1 || status=$?
tail -n 3 mutmut_run.log | tr '\r' '\n' | tail -n 2
mutmut export-cicd-stats > /dev/null 2>&1 && python - <<'EOF'
import json
s = json.load(open("mutants/mutmut-cicd-stats.json"))
scored = s["killed"] + s["survived"]
print(f"killed {s['killed']} / {scored} scored ({100 * s['killed'] / max(scored, 1):.0f} %), survived "
      f"{s['survived']}, timeout {s.get('timeout', 0)}, no tests {s.get('no_tests', 0)}, total {s['total']}")
EOF
for m in $(mutmut results 2>/dev/null | awk -F: '/survived/ {print $1}'); do echo "== $m"; mutmut show "$m" | sed -n '3,40p'; done
[[ $status == 0 ]] || echo "mutmut run ended with status $status (124: MUTATION_TIMEOUT); the counts cover what ran"
