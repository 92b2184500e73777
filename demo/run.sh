#!/usr/bin/env bash
# The tagshift demo on data shipped in the repo: corpus statistics, scheme conversion, label
# maps and entity-level scoring; then a BiLSTM-CRF trained, inspected, used and scored.
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

# 32 WikiGold documents to train on, the other 8 to choose the best epoch (and to score).
python - "$wiki" "$out" <<'PY'
import sys
from tagshift.corpus import Corpus, read_corpus, write_corpus
wiki = read_corpus(sys.argv[1])
cut = wiki.doc_starts[32].before
write_corpus(Corpus(wiki.sentences[:cut], wiki.path), f"{sys.argv[2]}/wiki.train.conll")
write_corpus(Corpus(wiki.sentences[cut:], wiki.path), f"{sys.argv[2]}/wiki.dev.conll")
PY
rm -rf "$out/wiki-bilstm"
step "Train a BiLSTM-CRF on 32 WikiGold documents (dev: the other 8)" \
  tagshift train --backend bilstm-crf --train "$out/wiki.train.conll" --dev "$out/wiki.dev.conll" \
  --epochs 12 --seed 0 --out "$out/wiki-bilstm"
step "What the bundle is and where it came from" tagshift info "$out/wiki-bilstm"
step "Tag raw text (one document per line; character offsets and confidences)" \
  tagshift predict "$out/wiki-bilstm" demo/news.txt --format jsonl
step "Score the model on the dev documents" tagshift evaluate "$out/wiki-bilstm" "$out/wiki.dev.conll"
echo
echo "demo outputs are in $out/ (learning curves: $out/wiki-bilstm/learning_curve.png)"
