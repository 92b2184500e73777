#!/usr/bin/env bash
# The tagshift demo on data shipped in the repo: a BiLSTM-CRF trained on WikiGold (news-like
# Wikipedia text: PER, LOC, ORG, MISC) is carried to politics (CrossNER), where two new types
# appear (election, event) and the new data annotates only those. Adapting with pseudo-labels
# gains the new types without forgetting the old ones; adapting naively forgets them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo/out
mkdir -p "$out"
wiki=data/wikigold/wikigold.slice.conll
politics=data/crossner/politics/train.txt

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "The source corpus: a WikiGold slice (IOB1, detected)" tagshift stats "$wiki"
step "The target corpus: CrossNER politics, its types mapped onto WikiGold's, election and event kept" \
  tagshift convert "$politics" "$out/politics.conll" --map demo/politics_new_types.toml

# Source: 32 WikiGold documents to train on, the other 8 to choose the best epoch.
# Target: 120 politics sentences annotated only for the new types, 30 to choose the best
# epoch (also new types only), and 50 held out with every type, for the forgetting report.
python - "$wiki" "$out" <<'PY'
import sys
from tagshift.corpus import Corpus, read_corpus, write_corpus
from tagshift.schemes import SCHEMES, chunks, encode
wiki, out = read_corpus(sys.argv[1]), sys.argv[2]
cut = wiki.doc_starts[32].before
write_corpus(Corpus(wiki.sentences[:cut], wiki.path), f"{out}/wiki.train.conll")
write_corpus(Corpus(wiki.sentences[cut:], wiki.path), f"{out}/wiki.dev.conll")
politics = read_corpus(f"{out}/politics.conll")
def only_new(sentences):
    return [s.with_tags(encode([x for x in chunks(s.tags) if x.label in ("election", "event")], len(s),
                               SCHEMES["iob2"])) for s in sentences]
write_corpus(Corpus(only_new(politics.sentences[:120]), politics.path), f"{out}/politics.train.new-only.conll")
write_corpus(Corpus(only_new(politics.sentences[120:150]), politics.path), f"{out}/politics.dev.new-only.conll")
write_corpus(Corpus(politics.sentences[150:], politics.path), f"{out}/politics.test.conll")
PY
step "What the target training data annotates: only the new types" tagshift stats "$out/politics.train.new-only.conll"

rm -rf "$out/source" "$out/adapted" "$out/adapted-naive"
step "Train the source: a BiLSTM-CRF on 32 WikiGold documents (dev: the other 8)" \
  tagshift train --backend bilstm-crf --train "$out/wiki.train.conll" --dev "$out/wiki.dev.conll" \
  --epochs 12 --seed 0 --out "$out/source" --no-progress
step "How the source's types meet CrossNER's own (a proposed map, with the evidence)" \
  tagshift labels suggest "$out/source" "$politics"
step "Adapt: extend the head with the new types; the source pseudo-labels its own types" \
  tagshift adapt "$out/source" --train "$out/politics.train.new-only.conll" \
  --dev "$out/politics.dev.new-only.conll" --pseudo-label --partial --epochs 15 --seed 0 \
  --out "$out/adapted" --no-progress
step "The forgetting report: per type, the source's F1 and the adapted model's, on held-out politics" \
  tagshift evaluate "$out/adapted" "$out/politics.test.conll" --baseline "$out/source" --plot "$out/forgetting.png"
step "For contrast, adapt naively: the new data's O teaches the old types away" \
  tagshift adapt "$out/source" --train "$out/politics.train.new-only.conll" \
  --dev "$out/politics.dev.new-only.conll" --epochs 15 --seed 0 --out "$out/adapted-naive" --no-progress
step "The naive model's forgetting report" \
  tagshift evaluate "$out/adapted-naive" "$out/politics.test.conll" --baseline "$out/source" \
  --plot "$out/forgetting-naive.png"
step "Where the adapted model came from" tagshift info "$out/adapted"
step "Tag raw text with it (one document per line; character offsets and confidences)" \
  tagshift predict "$out/adapted" demo/news.txt --format spans
echo
echo "demo outputs are in $out/ (charts: $out/forgetting.png, $out/forgetting-naive.png;"
echo "learning curves: $out/source/learning_curve.png, $out/adapted/learning_curve.png)"
