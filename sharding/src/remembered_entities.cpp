#include "remembered_entities.hpp"

#include "troupe/actors/codec.hpp"

#include <caf/send.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe::sharding::detail {

namespace {

constexpr std::string_view manifest = "troupe.sharding.remembered";

} // namespace

std::string remembered_persistence_id(std::string_view entity_type, shard_id shard) {
  return fmt::format("troupe.sharding-entities|{}|{}", entity_type, shard);
}

persistence::event_record remembered_record(std::string persistence_id, persistence::sequence_nr seq,
                                            const std::vector<std::string>& started,
                                            const std::vector<std::string>& stopped) {
  persistence::event_record r;
  r.persistence_id = std::move(persistence_id);
  r.seq = seq;
  r.manifest = std::string{manifest};
  codec_registry::append_cbor(nlohmann::json{{"started", started}, {"stopped", stopped}},
                              r.payload);
  r.timestamp_ms = persistence::now_ms();
  return r;
}

persistence::event_record remembered_set_record(std::string persistence_id,
                                                persistence::sequence_nr seq,
                                                const std::set<std::string>& ids) {
  persistence::event_record r;
  r.persistence_id = std::move(persistence_id);
  r.seq = seq;
  r.manifest = std::string{manifest};
  codec_registry::append_cbor(nlohmann::json{{"set", ids}}, r.payload);
  r.timestamp_ms = persistence::now_ms();
  return r;
}

expected<remembered_fold> fold_remembered(const std::vector<persistence::event_record>& events) {
  remembered_fold f;
  auto& ids = f.ids;
  for (auto& e : events) {
    auto damaged = [&](std::string_view why) {
      return error{errc::decode_failed,
                   fmt::format("{} seq {}: not a remembered-entities event ({})", e.persistence_id,
                               e.seq, why)};
    };
    if (e.manifest != manifest)
      return damaged(fmt::format("manifest '{}'", e.manifest));
    auto doc = codec_registry::cbor_to_json(e.payload);
    if (!doc)
      return damaged(doc.error().message());
    try {
      if (doc->contains("set")) {
        ids.clear();
        for (auto& id : doc->at("set"))
          ids.insert(id.get<std::string>());
        f.changes_since_set = 0;
        continue;
      }
      for (auto& id : doc->at("started"))
        ids.insert(id.get<std::string>());
      for (auto& id : doc->at("stopped"))
        ids.erase(id.get<std::string>());
      ++f.changes_since_set;
    } catch (const std::exception& ex) {
      return damaged(ex.what());
    }
  }
  return f;
}

void load_remembered(persistence::journal_service& journal, std::string persistence_id,
                     shard_id shard, std::uint64_t epoch, caf::actor to) {
  auto* j = &journal;
  journal.highest_sequence_nr(
    persistence_id, [j, pid = persistence_id, shard, epoch, to](expected<persistence::sequence_nr> h) {
      if (!h || *h == 0) {
        auto events = h ? expected<std::vector<persistence::event_record>>{std::vector<persistence::event_record>{}}
                        : expected<std::vector<persistence::event_record>>{h.error()};
        caf::anon_send(to, remembered_loaded{shard, epoch, std::move(events), 0});
        return;
      }
      j->read_events(pid, 1, *h, static_cast<std::size_t>(*h),
                     [shard, epoch, to, hi = *h](expected<std::vector<persistence::event_record>> r) {
                       caf::anon_send(to, remembered_loaded{shard, epoch, std::move(r), hi});
                     });
    });
}

} // namespace troupe::sharding::detail
