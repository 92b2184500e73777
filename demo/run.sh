#!/usr/bin/env bash
# The tagshift demo on data shipped in the repo. Until the taggers land it shows the
# foundation: corpus statistics, scheme conversion, label maps and entity-level scoring.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo/out
mkdir -p "$out"
wiki=data/wikigold/wikigold.slice.conll
politics=data/crossner/politics/train.txt

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "What is in the WikiGold slice (IOB1, detected)?" tagshift stats "$wiki"
step "The same corpus in IOBES" tagshift convert "$wiki" "$out/wiki.iobes.conll" --to iobes
step "CrossNER politics, with its types mapped onto CoNLL's" \
  tagshift convert "$politics" "$out/politics.conll-types.txt" --map demo/politics_to_conll.toml
step "Stats of the mapped corpus" tagshift stats "$out/politics.conll-types.txt"
step "A 'system' that lost MISC (dropped by a label map)" \
  tagshift convert "$wiki" "$out/wiki.no-misc.conll" --map demo/drop_misc.toml
step "Score it against gold (conlleval mode)" tagshift evaluate "$wiki" "$out/wiki.no-misc.conll"
step "The IOBES copy scores 100 against the IOB1 gold: the scheme changed, the entities did not" \
  tagshift evaluate "$wiki" "$out/wiki.iobes.conll" --mode conlleval
step "Side by side: the no-MISC system against the IOBES copy as baseline" \
  tagshift evaluate "$wiki" "$out/wiki.no-misc.conll" --baseline "$out/wiki.iobes.conll" \
  --group kept=PER,LOC,ORG --group lost=MISC
echo
echo "demo outputs are in $out/"
