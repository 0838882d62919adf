#!/usr/bin/env bash
# README command 1 as a new user meets it: a fresh clone of this checkout, a fresh virtual environment and an
# empty model cache; prints the seconds of its three parts (set-up, index, query). Run on an idle machine.
#   bash benchmarks/readme_first_run.sh
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$(cd "$(dirname "$0")/.." && pwd)" "$work/l2v-search"
cd "$work/l2v-search"
export L2V_SEARCH_CACHE_DIR="$work/cache"
line=$(sed -n '/^# 1\./{n;p;q}' README.md)  # the command itself, as the README writes it
setup=${line%% && .venv/bin/l2v-search index*}
rest=${line#"$setup && "}
index=${rest%% && *}
query=${rest#"$index && "}
seconds() { local began=$SECONDS; eval "$1" > /dev/null 2>&1; echo $((SECONDS - began)); }
s=$(seconds "$setup"); i=$(seconds "$index"); q=$(seconds "$query")
echo "set-up ${s} s, index ${i} s, query ${q} s, total $((s + i + q)) s"
