// The journal SPI contract (journal.hpp), run against every backend in
// TROUPE_CONFORMANCE_BACKENDS (conformance_backends.hpp).
#include "conformance_backends.hpp"

#include <doctest/doctest.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

using namespace troupe;
using namespace troupe::persistence;
using namespace troupe::test;

namespace {

void require_ok(const std::vector<write_result>& results) {
  for (auto& r : results) {
    INFO((r ? std::string{"ok"} : r.error().to_string()));
    REQUIRE(r);
  }
}

std::vector<sequence_nr> seqs_of(const std::vector<event_record>& events) {
  std::vector<sequence_nr> result;
  for (auto& e : events)
    result.push_back(e.seq);
  return result;
}

std::vector<event_record> read_all(journal_backend& j, const std::string& id) {
  auto r = j.read_events(id, 1, max_sequence_nr, 1'000'000);
  REQUIRE(r);
  return *r;
}

} // namespace

TEST_CASE_TEMPLATE("conformance: an atomic write stores all its events or none", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  require_ok(write_all(j, {make_write("a", 1, 3)}));
  CHECK(seqs_of(read_all(j, "a")) == std::vector<sequence_nr>{1, 2, 3});
  // 4 is new but 3 exists: the whole write is refused, 4 is not stored.
  auto r = write_all(j, {make_write("a", 3, 4)});
  REQUIRE(r.size() == 1);
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  CHECK(r[0].error().message().find("'a'") != std::string::npos);
  CHECK(seqs_of(read_all(j, "a")) == std::vector<sequence_nr>{1, 2, 3});
  CHECK(*j.highest_sequence_nr("a") == 3);
}

TEST_CASE_TEMPLATE("conformance: a conflict or rejection fails only that write of the batch", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  require_ok(write_all(j, {make_write("b", 1, 2)}));
  atomic_write empty;
  empty.persistence_id = "e";
  auto gap = make_write("g", 1, 2);
  gap.events[1].seq = 5;
  auto r = write_all(j, {make_write("a", 1, 2), make_write("b", 2, 3), make_write("c", 1, 1),
                         empty, gap, make_write("d", 1, 3)});
  REQUIRE(r.size() == 6);
  CHECK(r[0]);
  REQUIRE_FALSE(r[1]);
  CHECK(r[1].error().code() == errc::sequence_conflict);
  CHECK(r[2]);
  REQUIRE_FALSE(r[3]);
  CHECK(r[3].error().code() == errc::journal_rejected);
  REQUIRE_FALSE(r[4]);
  CHECK(r[4].error().code() == errc::journal_rejected);
  CHECK(r[4].error().message().find("'g'") != std::string::npos);
  CHECK(r[5]);
  CHECK(seqs_of(read_all(j, "a")) == std::vector<sequence_nr>{1, 2});
  CHECK(seqs_of(read_all(j, "b")) == std::vector<sequence_nr>{1, 2});
  CHECK(seqs_of(read_all(j, "c")) == std::vector<sequence_nr>{1});
  CHECK(read_all(j, "g").empty());
  CHECK(seqs_of(read_all(j, "d")) == std::vector<sequence_nr>{1, 2, 3});
  // The conflicting write's new seq 3 was not stored.
  CHECK(*j.highest_sequence_nr("b") == 2);
}

TEST_CASE_TEMPLATE("conformance: a write that overlaps an earlier write of its batch fails alone", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  require_ok(write_all(j, {make_write("a", 1, 1)}));
  // "a" 2..3 and "b" 1..2 are stored in this batch, so only the batch itself
  // shows that 3 and 2 are taken when the later writes ask for them.
  auto r = write_all(j, {make_write("a", 2, 3), make_write("b", 1, 2), make_write("a", 3, 4),
                         make_write("b", 2, 2), make_write("a", 4, 5)});
  REQUIRE(r.size() == 5);
  CHECK(r[0]);
  CHECK(r[1]);
  REQUIRE_FALSE(r[2]);
  CHECK(r[2].error().code() == errc::sequence_conflict);
  REQUIRE_FALSE(r[3]);
  CHECK(r[3].error().code() == errc::sequence_conflict);
  CHECK(r[4]);
  CHECK(seqs_of(read_all(j, "a")) == std::vector<sequence_nr>{1, 2, 3, 4, 5});
  CHECK(seqs_of(read_all(j, "b")) == std::vector<sequence_nr>{1, 2});
}

TEST_CASE_TEMPLATE("conformance: events round-trip with writer, timestamp, manifest and version",
                   B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  auto w = make_write("acct|1", 1, 2, {"t1", "t2"});
  w.events[0].writer = "incarnation-7f3a";
  w.events[0].timestamp_ms = 1'700'000'000'123;
  w.events[0].manifest = "bank.deposited";
  w.events[0].version = 3;
  w.events[1].persistence_id.clear();  // empty: the write's id
  auto before = now_ms();
  require_ok(write_all(j, {w}));
  auto after = now_ms();
  auto events = read_all(j, "acct|1");
  REQUIRE(events.size() == 2);
  CHECK(events[0].persistence_id == "acct|1");
  CHECK(events[0].writer == "incarnation-7f3a");
  CHECK(events[0].timestamp_ms == 1'700'000'000'123);
  CHECK(events[0].manifest == "bank.deposited");
  CHECK(events[0].version == 3);
  CHECK(events[0].payload == w.events[0].payload);
  CHECK(events[0].tags == std::vector<std::string>{"t1", "t2"});
  CHECK(events[1].persistence_id == "acct|1");
  CHECK(events[1].timestamp_ms >= before);  // 0 in the request: set by the journal
  CHECK(events[1].timestamp_ms <= after);
  CHECK(events[0].offset > 0);
  CHECK(events[1].offset > events[0].offset);
}

TEST_CASE_TEMPLATE("conformance: every event of a batch of many writes round-trips all its fields",
                   B, TROUPE_CONFORMANCE_BACKENDS) {
  // 40 writes: more than one multi-row insert's worth where a backend inserts rows
  // in chunks, each event with fields of its own (tags on every third).
  auto b = B::make();
  auto& j = *b.journal;
  std::vector<atomic_write> batch;
  for (int i = 0; i < 40; ++i) {
    auto id = fmt::format("many|{}", i);
    auto w = make_write(id, 1, 1, i % 3 == 0 ? std::vector<std::string>{fmt::format("tag-{}", i)}
                                             : std::vector<std::string>{});
    auto& e = w.events[0];
    e.writer = fmt::format("writer-{}", i);
    e.timestamp_ms = 1'700'000'000'000 + i;
    e.manifest = fmt::format("test.m{}", i);
    e.version = static_cast<std::uint32_t>(i + 1);
    e.payload = nlohmann::json::to_cbor(nlohmann::json{{"i", i}});
    batch.push_back(std::move(w));
  }
  auto results = write_all(j, batch);
  REQUIRE(results.size() == batch.size());
  for (int i = 0; i < 40; ++i) {
    CAPTURE(i);
    CHECK(results[static_cast<std::size_t>(i)]);
    auto& sent = batch[static_cast<std::size_t>(i)].events[0];
    auto events = read_all(j, fmt::format("many|{}", i));
    REQUIRE(events.size() == 1);
    CHECK(events[0].seq == 1);
    CHECK(events[0].writer == sent.writer);
    CHECK(events[0].timestamp_ms == sent.timestamp_ms);
    CHECK(events[0].manifest == sent.manifest);
    CHECK(events[0].version == sent.version);
    CHECK(events[0].payload == sent.payload);
    CHECK(events[0].tags == sent.tags);
  }
}

TEST_CASE_TEMPLATE("conformance: replay reads a range in ascending pages", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  require_ok(write_all(j, {make_write("x", 1, 10), make_write("y", 1, 3)}));
  auto r = j.read_events("x", 3, 7, 100);
  REQUIRE(r);
  CHECK(seqs_of(*r) == std::vector<sequence_nr>{3, 4, 5, 6, 7});
  r = j.read_events("x", 3, 7, 2);
  REQUIRE(r);
  CHECK(seqs_of(*r) == std::vector<sequence_nr>{3, 4});
  r = j.read_events("x", 11, max_sequence_nr, 100);
  REQUIRE(r);
  CHECK(r->empty());
  r = j.read_events("unknown", 1, max_sequence_nr, 100);
  REQUIRE(r);
  CHECK(r->empty());
  CHECK(*j.highest_sequence_nr("unknown") == 0);
}

/// Every field of every record, so that a refilled page can be compared with a
/// fresh read.
static std::vector<std::string> fields_of(const std::vector<event_record>& events) {
  std::vector<std::string> out;
  for (auto& e : events) {
    std::string tags;
    for (auto& t : e.tags)
      tags += t + ",";
    out.push_back(fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", e.persistence_id, e.seq, e.manifest,
                              e.version, fmt::join(e.payload, " "), tags, e.writer,
                              e.timestamp_ms, e.offset));
  }
  return out;
}

TEST_CASE_TEMPLATE("conformance: read_events_into refills a page that held other records", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  auto tagged = make_write("long-id-of-the-first-entity", 1, 6, {"t1", "t2"});
  for (auto& e : tagged.events)
    e.writer = "writer-with-a-name-longer-than-sso";
  require_ok(write_all(j, {tagged, make_write("b", 1, 3)}));
  // A page of six tagged records refilled with three untagged ones of another
  // id: the same records as a fresh read, nothing left of the old ones.
  auto page = read_all(j, "long-id-of-the-first-entity");
  REQUIRE(page.size() == 6);
  REQUIRE(j.read_events_into("b", 1, 3, 100, page));
  CHECK(fields_of(page) == fields_of(read_all(j, "b")));
  // And grown again, past what it held.
  REQUIRE(j.read_events_into("long-id-of-the-first-entity", 2, 6, 100, page));
  CHECK(fields_of(page) == fields_of(*j.read_events("long-id-of-the-first-entity", 2, 6, 100)));
  // Empty result: an empty page.
  REQUIRE(j.read_events_into("unknown", 1, max_sequence_nr, 100, page));
  CHECK(page.empty());
}

TEST_CASE_TEMPLATE("conformance: replaying 1,000,000 events of one id in bounded pages", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  constexpr sequence_nr total = 1'000'000;
  constexpr sequence_nr per_write = 1000;
  constexpr std::size_t writes_per_batch = 50;
  // Small payloads: the test is about paging, not about bytes.
  event_record proto = make_event("big", 1);
  proto.payload = {0x01};
  std::vector<atomic_write> batch;
  for (sequence_nr s = 1; s <= total; s += per_write) {
    atomic_write w;
    w.persistence_id = "big";
    w.events.reserve(per_write);
    for (sequence_nr k = 0; k < per_write; ++k) {
      w.events.push_back(proto);
      w.events.back().seq = s + k;
    }
    batch.push_back(std::move(w));
    if (batch.size() == writes_per_batch) {
      auto r = j.write(std::span<const atomic_write>{batch});
      REQUIRE(std::all_of(r.begin(), r.end(), [](auto& x) { return x.has_value(); }));
      batch.clear();
    }
  }
  REQUIRE(batch.empty());
  REQUIRE(*j.highest_sequence_nr("big") == total);

  constexpr std::size_t page_size = 4096;
  sequence_nr next = 1;
  std::size_t pages = 0;
  std::size_t largest_page = 0;
  bool in_order = true;
  for (;;) {
    auto page = j.read_events("big", next, max_sequence_nr, page_size);
    REQUIRE(page);
    if (page->empty())
      break;
    ++pages;
    largest_page = std::max(largest_page, page->size());
    for (auto& e : *page) {
      in_order = in_order && e.seq == next;
      ++next;
    }
  }
  CHECK(in_order);
  CHECK(next - 1 == total);
  CHECK(largest_page <= page_size);
  CHECK(pages == (total + page_size - 1) / page_size);
}

TEST_CASE_TEMPLATE("conformance: delete_events_to never lowers the highest sequence nr", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  require_ok(write_all(j, {make_write("d", 1, 5, {"tag"})}));
  REQUIRE(j.delete_events_to("d", 3));
  CHECK(seqs_of(read_all(j, "d")) == std::vector<sequence_nr>{4, 5});
  CHECK(*j.highest_sequence_nr("d") == 5);
  auto tagged = j.events_by_tag("tag", 0, 100);
  REQUIRE(tagged);
  CHECK(seqs_of(*tagged) == std::vector<sequence_nr>{4, 5});
  // Deleting everything (and beyond) keeps the highest at 5 and the id listed, and
  // the deleted newest events' offsets stay used.
  auto highest_offset = *j.highest_offset();
  REQUIRE(j.delete_events_to("d", max_sequence_nr));
  CHECK(read_all(j, "d").empty());
  CHECK(*j.highest_sequence_nr("d") == 5);
  CHECK(*j.highest_offset() == highest_offset);
  auto ids = j.persistence_ids("", 10);
  REQUIRE(ids);
  CHECK(*ids == std::vector<std::string>{"d"});
  // A deleted seq is taken: writing it again is a conflict, the next one is fine.
  auto r = write_all(j, {make_write("d", 5, 5), make_write("d", 6, 6)});
  REQUIRE_FALSE(r[0]);
  CHECK(r[0].error().code() == errc::sequence_conflict);
  CHECK(r[1]);
  CHECK(*j.highest_sequence_nr("d") == 6);
  auto after = read_all(j, "d");
  REQUIRE(after.size() == 1);
  CHECK(after[0].offset > highest_offset);
}

TEST_CASE_TEMPLATE("conformance: offsets increase strictly in commit order", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  CHECK(*j.highest_offset() == 0);
  require_ok(write_all(j, {make_write("p", 1, 2, {"all"}), make_write("q", 1, 1, {"all"})}));
  require_ok(write_all(j, {make_write("q", 2, 3, {"all"})}));
  // A failed write in between does not leave offsets that go backwards.
  write_all(j, {make_write("p", 2, 2, {"all"}), make_write("p", 3, 3, {"all"})});
  auto events = j.events_by_tag("all", 0, 100);
  REQUIRE(events);
  REQUIRE(events->size() == 6);
  std::vector<std::string> order;
  for (std::size_t i = 0; i < events->size(); ++i) {
    if (i > 0)
      CHECK((*events)[i].offset > (*events)[i - 1].offset);
    order.push_back((*events)[i].persistence_id + std::to_string((*events)[i].seq));
  }
  CHECK(order == std::vector<std::string>{"p1", "p2", "q1", "q2", "q3", "p3"});
  CHECK(*j.highest_offset() == events->back().offset);
}

TEST_CASE_TEMPLATE("conformance: events_by_tag pages by offset", B, TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  for (sequence_nr s = 1; s <= 10; ++s) {
    auto tags = s % 2 == 0 ? std::vector<std::string>{"even", "all"} : std::vector<std::string>{"all"};
    require_ok(write_all(j, {make_write("t1", s, s, tags), make_write("t2", s, s, {"other"})}));
  }
  offset_type after = 0;
  std::vector<sequence_nr> seen;
  for (;;) {
    auto page = j.events_by_tag("even", after, 2);
    REQUIRE(page);
    CHECK(page->size() <= 2);
    if (page->empty())
      break;
    for (auto& e : *page) {
      CHECK(e.offset > after);
      CHECK(e.persistence_id == "t1");
      CHECK(std::find(e.tags.begin(), e.tags.end(), "even") != e.tags.end());
      after = e.offset;
      seen.push_back(e.seq);
    }
  }
  CHECK(seen == std::vector<sequence_nr>{2, 4, 6, 8, 10});
  auto all = j.events_by_tag("all", 0, 100);
  REQUIRE(all);
  CHECK(all->size() == 10);
  auto none = j.events_by_tag("no-such-tag", 0, 100);
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE_TEMPLATE("conformance: persistence_ids pages in ascending order", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& j = *b.journal;
  std::vector<atomic_write> batch;
  std::set<std::string> expected_ids;
  for (int i = 0; i < 25; ++i) {
    auto id = id_of("id-", 100 + i);
    expected_ids.insert(id);
    batch.push_back(make_write(id, 1, 1));
  }
  require_ok(write_all(j, std::move(batch)));
  // A snapshot alone does not make an id "have events".
  REQUIRE(b.snapshots->save(make_snapshot("snapshot-only", 1)));
  std::vector<std::string> seen;
  std::string after;
  for (;;) {
    auto page = j.persistence_ids(after, 10);
    REQUIRE(page);
    CHECK(page->size() <= 10);
    if (page->empty())
      break;
    seen.insert(seen.end(), page->begin(), page->end());
    after = page->back();
  }
  CHECK(seen == std::vector<std::string>(expected_ids.begin(), expected_ids.end()));
}

TEST_CASE_TEMPLATE("conformance: snapshots save, load by criteria and delete", B,
                   TROUPE_CONFORMANCE_BACKENDS) {
  auto b = B::make();
  auto& s = *b.snapshots;
  auto snap = [](sequence_nr seq, std::int64_t ts) {
    auto r = make_snapshot("s", seq, ts);
    r.version = 2;
    return r;
  };
  auto none = s.load("s", snapshot_criteria::latest());
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  REQUIRE(s.save(snap(10, 1000)));
  REQUIRE(s.save(snap(20, 2000)));
  REQUIRE(s.save(snap(30, 3000)));
  auto latest = s.load("s", snapshot_criteria::latest());
  REQUIRE(latest);
  REQUIRE(latest->has_value());
  CHECK((*latest)->seq == 30);
  CHECK((*latest)->persistence_id == "s");
  CHECK((*latest)->timestamp_ms == 3000);
  CHECK((*latest)->manifest == "test.state");
  CHECK((*latest)->version == 2);
  CHECK((*latest)->payload == snap(30, 3000).payload);
  snapshot_criteria upto_25;
  upto_25.max_seq = 25;
  CHECK((*s.load("s", upto_25))->seq == 20);
  snapshot_criteria before_ts;
  before_ts.max_timestamp_ms = 1500;
  CHECK((*s.load("s", before_ts))->seq == 10);
  CHECK_FALSE(s.load("s", snapshot_criteria::none())->has_value());
  CHECK_FALSE(s.load("other", snapshot_criteria::latest())->has_value());
  // Saving at an existing seq replaces it.
  auto replaced = snap(30, 3500);
  REQUIRE(s.save(replaced));
  CHECK((*s.load("s", snapshot_criteria::latest()))->timestamp_ms == 3500);
  // Delete older ones (keep the latest).
  snapshot_criteria older;
  older.max_seq = 29;
  REQUIRE(s.delete_matching("s", older));
  CHECK((*s.load("s", snapshot_criteria::latest()))->seq == 30);
  CHECK_FALSE(s.load("s", upto_25)->has_value());
  REQUIRE(s.delete_matching("s", snapshot_criteria::latest()));
  CHECK_FALSE(s.load("s", snapshot_criteria::latest())->has_value());
}
