#!/usr/bin/env bash
# hostile-report.sh: run `rocebed validate` under /usr/bin/time -v on every hostile scenario
# shape (testbed/scenario/internal/hostile), each about 1 MiB, and print exit code, wall time
# and peak memory. The target: every shape refused (exit 2) in under 1 s using under 100 MB.
# Run from the repository root: testbed/scenario/hostile-report.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/rocebed" ./cmd/rocebed
mkdir "$dir/shapes"
go run ./testbed/scenario/internal/hostile/write "$dir/shapes"
printf '%-36s %8s %5s %9s %9s\n' shape bytes exit seconds max-MB
worst_s=0 worst_kb=0 fail=0
for f in "$dir"/shapes/*.yaml; do
	set +e
	/usr/bin/time -v -o "$dir/time" "$dir/rocebed" validate "$f" >/dev/null 2>"$dir/err"
	code=$?
	set -e
	s=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2, t, ":"); v=0; for (i=1; i<=n; i++) v=v*60+t[i]; print v}' "$dir/time")
	kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time")
	printf '%-36s %8d %5d %9.2f %9.1f\n' "$(basename "$f" .yaml)" "$(stat -c %s "$f")" "$code" "$s" "$(echo "$kb/1024" | bc -l)"
	awk -v s="$s" -v w="$worst_s" 'BEGIN {exit !(s > w)}' && worst_s=$s
	((kb > worst_kb)) && worst_kb=$kb
	if [ "$code" -ne 2 ] || awk -v s="$s" 'BEGIN {exit !(s >= 1)}' || ((kb >= 100 * 1024)); then fail=1; fi
done
printf 'worst: %.2f s, %.1f MB\n' "$worst_s" "$(echo "$worst_kb/1024" | bc -l)"
exit $fail
