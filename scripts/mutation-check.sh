#!/usr/bin/env bash
# Mutation check: do the tests catch a broken invariant? Applies deliberate bugs to
# troupe's most important invariants one at a time, rebuilds only the suite that
# guards it, runs that suite, and reports for each whether a test caught it.
#
#   scripts/mutation-check.sh            all mutations
#   scripts/mutation-check.sh NAME...    the named ones
#   scripts/mutation-check.sh --list     names and what each breaks
#
# - Builds into build-mutation/ (Release, no benchmarks; MUTATION_BUILD_DIR to
#   change), so build/ never holds a mutant. The unmutated suites run first: a suite
#   that already fails would catch everything.
# - Each mutation replaces one exact piece of code that must occur exactly once in
#   its file; otherwise it reports "mutation no longer applies" (the code moved:
#   update the anchor here) and the check fails.
# - The source file is restored after each mutation, also on failure or Ctrl-C
#   (the restored file gets a new mtime, so the next build recompiles it).
# - Logs: build-mutation/mutation-logs/<name>.log.
# Exit status 0 only if every mutation applied, compiled and was caught.
#
# Not part of CI: each mutation rebuilds and reruns a whole suite (about 30 minutes
# for all on 2 cores). Run it after changing a guarded invariant or its tests
# (docs/contributing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${MUTATION_BUILD_DIR:-build-mutation}"
case "$build_dir" in /*) ;; *) build_dir="$PWD/$build_dir" ;; esac
jobs="${JOBS:-$(nproc)}"
logs="$build_dir/mutation-logs"

names=() files=() anchors=() replacements=() suites=() descriptions=()

# mutation NAME FILE SUITE DESCRIPTION ANCHOR REPLACEMENT
# SUITE is a test layer: the mutant builds troupe-tests-SUITE and runs its entries.
mutation() {
  names+=("$1") files+=("$2") suites+=("$3") descriptions+=("$4") anchors+=("$5")
  replacements+=("$6")
}

mutation ack-before-commit persistence/src/journal_service.cpp persistence \
  "the journal service acknowledges a write before the backend committed it" \
  'auto results = journal_->write(std::span<const atomic_write>{writes});' \
  'for (auto& d : dones) { invoke(d, expected<void>{}); d = nullptr; }
    auto results = journal_->write(std::span<const atomic_write>{writes});'

mutation synchronous-normal persistence/src/sqlite_schema.cpp persistence \
  "the SQLite journal runs with synchronous=NORMAL whatever the configuration says" \
  'fmt::format("PRAGMA synchronous={};", to_string(opts.synchronous))' \
  'fmt::format("PRAGMA synchronous=NORMAL;{}", "")'

mutation sqlite-duplicate-seq persistence/src/sqlite_journal_write.cpp persistence \
  "the SQLite journal stores a second event with the same (persistence id, seq)" \
  'if (*taken != 0)' \
  'if (false)'

mutation memory-duplicate-seq persistence/src/memory_journal.cpp persistence \
  "the memory journal stores a second event with the same (persistence id, seq)" \
  'if (e.seq <= state.deleted_to || find_event(w.persistence_id, e.seq) != nullptr)' \
  'if (e.seq <= state.deleted_to)'

mutation recovery-ignores-gap persistence/src/entity_recovery.cpp persistence \
  "entity recovery applies the events after a missing sequence nr" \
  'if (rec.seq != st.last_seq + 1)' \
  'if (rec.seq <= st.last_seq)'

mutation sqlite-stale-epoch-stored persistence/src/sqlite_journal_write.cpp persistence \
  "the SQLite journal stores a write whose fence epoch is older than the stored one" \
  'if (stored && static_cast<std::uint64_t>(*stored) > f.epoch)' \
  'if (false)'

mutation memory-stale-epoch-stored persistence/src/memory_journal.cpp persistence \
  "the memory journal stores a write whose fence epoch is older than the stored one" \
  'if (i != fences_.end() && i->second > f.epoch)' \
  'if (false)'

mutation projection-commits-failed-batch persistence/src/projection.cpp persistence \
  "an exactly-once projection commits a batch whose handler failed" \
  'db_->rollback_if_open();
      fail(std::move(ok).error());' \
  '(void)db_->exec("COMMIT");
      fail(std::move(ok).error());'

mutation restart-intensity-off-by-one actors/src/supervisor.cpp actors \
  "a supervisor allows one restart more than max_restarts within the window" \
  'if (static_cast<int>(st.restart_log.size()) >= st.spec.max_restarts)' \
  'if (static_cast<int>(st.restart_log.size()) > st.spec.max_restarts)'

mutation hmac-welcome-not-verified actors/src/remote/handshake.cpp remote \
  "a connecting node accepts a welcome whose HMAC proof is wrong" \
  'if (!equal_in_constant_time(m.mac, expected_mac))' \
  'if (expected_mac.empty())'

mutation hmac-auth-not-verified actors/src/remote/handshake.cpp remote \
  "an accepting node accepts an auth frame whose HMAC proof is wrong" \
  '&& !equal_in_constant_time(*proof, mac(initiator_label)))' \
  '&& proof->size() > 1000000)'

mutation forming-convergence membership/src/gossip.cpp membership \
  "a forming cluster converges without its joining members' views (two leaders, two up numbers)" \
  'bool forming = std::none_of(' \
  'bool forming = false && std::none_of('

mutation offset-watermark-past-gap streams/include/troupe/streams/detail/offset_window.hpp streams \
  "an offset commit moves past an element still in flight (replies arrive out of order)" \
  'while (!entries_.empty() && entries_.front().closed) {' \
  'while (!entries_.empty() && (entries_.front().closed || entries_.size() > 0)) {'

mutation dedup-misses-its-mark persistence/include/troupe/persistence/producer_offsets.hpp streams \
  "an entity applies again the element its producer mark already records" \
  'return i != marks_.end() && o.seq <= i->second;' \
  'return i != marks_.end() && o.seq < i->second;'

usage() {
  echo "usage: scripts/mutation-check.sh [--list | NAME...]" >&2
  exit 2
}

if [ "${1:-}" = "--list" ]; then
  for i in "${!names[@]}"; do
    printf '%-32s %s (%s, %s tests)\n' "${names[$i]}" "${descriptions[$i]}" "${files[$i]}" \
      "${suites[$i]}"
  done
  exit 0
fi
case "${1:-}" in -*) usage ;; esac

selected=()
if [ $# -eq 0 ]; then
  selected=("${!names[@]}")
else
  for want in "$@"; do
    found=""
    for i in "${!names[@]}"; do
      [ "${names[$i]}" = "$want" ] && found="$i"
    done
    [ -n "$found" ] || { echo "mutation-check: no mutation named '$want' (--list)" >&2; exit 2; }
    selected+=("$found")
  done
fi

# -- restoring the tree ---------------------------------------------------------------
backup_dir="$(mktemp -d)"
mutated_file=""

restore() {
  if [ -n "$mutated_file" ]; then
    cp "$backup_dir/original" "$mutated_file"
    if ! cmp -s "$backup_dir/original" "$mutated_file"; then
      echo "mutation-check: could not restore $mutated_file (original: $backup_dir/original)" >&2
      exit 1
    fi
    mutated_file=""
  fi
}
on_exit() {
  restore
  rm -rf "$backup_dir"
}
trap on_exit EXIT
trap 'echo; echo "mutation-check: interrupted; tree restored" >&2; exit 130' INT TERM

# Occurrences of $ANCHOR in a file (perl: exact text, newlines included).
count_anchor() {
  ANCHOR="$1" perl -0777 -ne 'my $n = () = /\Q$ENV{ANCHOR}\E/g; print $n' "$2"
}

apply() {  # apply FILE ANCHOR REPLACEMENT
  cp "$1" "$backup_dir/original"
  mutated_file="$1"
  ANCHOR="$2" REPLACEMENT="$3" perl -0777 -i -pe 's/\Q$ENV{ANCHOR}\E/$ENV{REPLACEMENT}/' "$1"
}

# -- building and testing -------------------------------------------------------------
build_suite() {  # build_suite SUITE LOG
  cmake --build "$build_dir" -j "$jobs" --target "troupe-tests-$1" >>"$2" 2>&1
}
run_suite() {  # run_suite SUITE LOG; the status of ctest (entries are named "SUITE:...")
  (cd "$build_dir" && ctest -j "$jobs" --timeout 300 -R "^$1:" >>"$2" 2>&1)
  local status=$?
  if ! grep -qE 'tests passed, [0-9]+ tests failed out of [1-9]' "$2"; then
    echo "mutation-check: ctest ran no $1 test (see $2)" >&2
    exit 1
  fi
  return $status
}
failed_tests() {  # the failed entries ctest listed in LOG
  sed -n '/The following tests FAILED:/,$p' "$1" | grep -E '^[[:space:]]+[0-9]+ - ' \
    | sed -E 's/^[[:space:]]+[0-9]+ - (.*) \(.*\)$/\1/'
}

mkdir -p "$logs"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTROUPE_BUILD_BENCH=OFF >/dev/null

needed_suites=()
for i in "${selected[@]}"; do
  case " ${needed_suites[*]} " in *" ${suites[$i]} "*) ;; *) needed_suites+=("${suites[$i]}") ;; esac
done
for s in "${needed_suites[@]}"; do
  log="$logs/baseline-$s.log"
  : >"$log"
  echo "baseline: building and running the unmutated $s suite ..."
  if ! build_suite "$s" "$log" || ! run_suite "$s" "$log"; then
    echo "mutation-check: the unmutated $s suite fails (see $log); fix that first" >&2
    exit 1
  fi
done

caught=0 problems=0
for i in "${selected[@]}"; do
  name="${names[$i]}" file="${files[$i]}" suite="${suites[$i]}"
  log="$logs/$name.log"
  : >"$log"
  n="$(count_anchor "${anchors[$i]}" "$file")"
  if [ "$n" != "1" ]; then
    echo "MUTATION NO LONGER APPLIES  $name: its anchor occurs $n times in $file (expected once);"
    echo "    the code moved: update the anchor in scripts/mutation-check.sh"
    problems=$((problems + 1))
    continue
  fi
  apply "$file" "${anchors[$i]}" "${replacements[$i]}"
  if ! build_suite "$suite" "$log"; then
    restore
    echo "DOES NOT COMPILE  $name (see $log): fix the mutation"
    problems=$((problems + 1))
    continue
  fi
  if run_suite "$suite" "$log"; then
    restore
    echo "MISSED  $name: ${descriptions[$i]}; every $suite test passed"
    problems=$((problems + 1))
  else
    restore
    caught=$((caught + 1))
    echo "caught  $name: ${descriptions[$i]}; $(failed_tests "$log" | wc -l) tests failed:"
    failed_tests "$log" | sed 's/^/    /'
  fi
done

echo "mutation-check: ${caught} of ${#selected[@]} mutations caught"
[ "$problems" -eq 0 ]
