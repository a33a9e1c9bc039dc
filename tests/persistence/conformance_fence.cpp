// Write fences (journal.hpp, write_fence), run against every backend in
// TROUPE_CONFORMANCE_BACKENDS: a write under an epoch older than its key's stored
// epoch is refused with `fenced` and stores nothing; equal and newer epochs are
// stored and raise the stored epoch; the check is atomic with the write and with
// the rest of its batch.
#include "conformance_backends.hpp"

#include <doctest/doctest.h>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

atomic_write fenced_write(const std::string& id, sequence_nr from, sequence_nr to,
                          std::string key, std::uint64_t epoch) {
  auto w = make_write(id, from, to);
  w.fence = write_fence{std::move(key), epoch};
  return w;
}

} // namespace

TEST_CASE_TEMPLATE("conformance: a write under a stale epoch is fenced, equal and newer are stored",
                   B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  CHECK(*j.fence_epoch("shard-7") == 0);
  REQUIRE(write_all(j, {fenced_write("a", 1, 1, "shard-7", 3)})[0]);
  CHECK(*j.fence_epoch("shard-7") == 3);
  REQUIRE(write_all(j, {fenced_write("a", 2, 2, "shard-7", 3)})[0]);  // equal
  REQUIRE(write_all(j, {fenced_write("b", 1, 1, "shard-7", 5)})[0]);  // newer
  CHECK(*j.fence_epoch("shard-7") == 5);

  auto r = write_all(j, {fenced_write("a", 3, 4, "shard-7", 4)});  // stale
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
  CHECK(mentions(r[0].error(), "'a'"));
  CHECK(mentions(r[0].error(), "shard-7"));
  CHECK(mentions(r[0].error(), "epoch 5"));
  CHECK(mentions(r[0].error(), "epoch 4"));
  CHECK(stored(j, "a") == 2);
  CHECK(*j.highest_sequence_nr("a") == 2);
  CHECK(*j.fence_epoch("shard-7") == 5);
  // An unfenced write and a write under another key are not affected.
  REQUIRE(write_all(j, {make_write("a", 3, 3)})[0]);
  REQUIRE(write_all(j, {fenced_write("c", 1, 1, "shard-8", 1)})[0]);
  CHECK(*j.fence_epoch("shard-8") == 1);
}

TEST_CASE_TEMPLATE("conformance: a fence check is atomic with its write", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  REQUIRE(write_all(j, {fenced_write("a", 1, 2, "k", 2)})[0]);
  // A multi-event write under a stale epoch stores none of its events, and the
  // offset it would have taken is not used.
  auto before = *j.highest_offset();
  auto r = write_all(j, {fenced_write("a", 3, 6, "k", 1)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
  CHECK(stored(j, "a") == 2);
  CHECK(*j.highest_offset() == before);
  // A write under a newer epoch whose events conflict is not stored, and does not
  // raise the epoch either: nothing of it happened.
  r = write_all(j, {fenced_write("a", 2, 3, "k", 9)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  CHECK(*j.fence_epoch("k") == 2);
  CHECK(stored(j, "a") == 2);
  // An invalid fence is rejected like any invalid write.
  r = write_all(j, {fenced_write("a", 3, 3, "", 2), fenced_write("a", 3, 3, "k", max_fence_epoch + 1)});
  for (auto& x : r) {
    REQUIRE_FALSE(x);
    CHECK(x.error().code() == errc::journal_rejected);
    CHECK(mentions(x.error(), "'a'"));
  }
  CHECK(*j.fence_epoch("k") == 2);
}

TEST_CASE_TEMPLATE("conformance: a fenced write in a group commit fails alone", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  REQUIRE(j.advance_fence("s1", 4));
  // In batch order: e raises s1 to 6, so f (epoch 5) is fenced, though it was
  // newer than the epoch stored before the batch. The others commit.
  auto r = write_all(j, {fenced_write("a", 1, 1, "s1", 3), make_write("b", 1, 2),
                         fenced_write("c", 1, 3, "s1", 4), fenced_write("d", 1, 1, "s2", 1),
                         fenced_write("e", 1, 1, "s1", 6), fenced_write("f", 1, 1, "s1", 5)});
  REQUIRE(r.size() == 6);
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
  CHECK(r[1]);
  CHECK(r[2]);
  CHECK(r[3]);
  CHECK(r[4]);
  REQUIRE_FALSE(r[5]);
  CHECK(r[5].error().code() == errc::fenced);
  CHECK(mentions(r[5].error(), "'f'"));
  CHECK(stored(j, "a") == 0);
  CHECK(stored(j, "b") == 2);
  CHECK(stored(j, "c") == 3);
  CHECK(stored(j, "d") == 1);
  CHECK(stored(j, "e") == 1);
  CHECK(stored(j, "f") == 0);
  CHECK(*j.fence_epoch("s1") == 6);
  CHECK(*j.fence_epoch("s2") == 1);
  // Offsets stay dense and strictly increasing over what was stored.
  CHECK(*j.highest_offset() == 7);
}

TEST_CASE_TEMPLATE("conformance: advance_fence raises the epoch and refuses to lower it", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  REQUIRE(write_all(j, {fenced_write("a", 1, 1, "shard-1", 1)})[0]);
  // The new owner raises the fence before it starts any entity: from then on the
  // old owner's writes are refused.
  REQUIRE(j.advance_fence("shard-1", 2));
  CHECK(*j.fence_epoch("shard-1") == 2);
  auto r = write_all(j, {fenced_write("a", 2, 2, "shard-1", 1)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::fenced);
  REQUIRE(write_all(j, {fenced_write("a", 2, 2, "shard-1", 2)})[0]);
  // Equal: a no-op success. Lower: fenced, naming the key and both epochs.
  CHECK(j.advance_fence("shard-1", 2));
  auto lower = j.advance_fence("shard-1", 1);
  REQUIRE_FALSE(lower);
  CHECK(lower.error().code() == errc::fenced);
  CHECK(mentions(lower.error(), "advance_fence"));
  CHECK(mentions(lower.error(), "shard-1"));
  CHECK(mentions(lower.error(), "epoch 2"));
  CHECK(mentions(lower.error(), "epoch 1"));
  CHECK(*j.fence_epoch("shard-1") == 2);
  // A key that never had a fence starts anywhere.
  REQUIRE(j.advance_fence("fresh", max_fence_epoch));
  CHECK(*j.fence_epoch("fresh") == max_fence_epoch);
  // Bad input: a clear error, nothing changed.
  auto empty = j.advance_fence("", 1);
  REQUIRE_FALSE(empty);
  CHECK(empty.error().code() == errc::journal_rejected);
  auto huge = j.advance_fence("shard-1", max_fence_epoch + 1);
  REQUIRE_FALSE(huge);
  CHECK(huge.error().code() == errc::journal_rejected);
  CHECK(mentions(huge.error(), "shard-1"));
  CHECK(*j.fence_epoch("shard-1") == 2);
}
