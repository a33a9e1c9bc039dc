// The table side of the order enrichment sample's stream–table join
// (docs/streams.md, "Samples"): each customer's latest credit score as an
// event-sourced, sharded entity.
//
// The entity is kept up to date by a stream of its own (credit-score updates,
// each a set_score carrying the bureau's version of the score), and an order is
// joined with it by sending the order TO the entity (enrich): the entity answers
// with the order enriched from the score it holds, without persisting anything.
// The join runs where the data is, in the entity's mailbox order, so an order sees
// every score update that reached that customer's entity before it.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/entity.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace order_enrichment {

using troupe::persistence::done;

/// An element of the score stream: version `version` (from 1, increasing per
/// customer, as the bureau numbers them) of `customer`'s score.
struct credit_update {
  std::string customer;
  std::int64_t version = 0;
  std::int32_t score = 0;
};

/// An element of the order stream.
struct order {
  std::string id;
  std::string customer;
  std::int64_t amount = 0;
  friend bool operator==(const order&, const order&) = default;
};

/// What the join decided. An order of a customer without a score is not dropped:
/// it comes out as unknown_customer (for a manual review, say).
enum class decision { approved, declined, unknown_customer };

/// An order with the score its customer's entity held when the order reached it.
struct enriched_order {
  order o;
  std::int64_t score_version = 0;  ///< 0: the customer had no score yet
  std::int32_t score = 0;
  decision verdict = decision::unknown_customer;
  friend bool operator==(const enriched_order&, const enriched_order&) = default;
};

/// Scores range over 300..850 (as FICO's do).
inline constexpr std::int32_t min_score = 300;
inline constexpr std::int32_t max_score = 850;

/// The approval rule: an order is approved when its amount is at most the
/// customer's limit, 40 per point above 600 (a score of 700 may order 4,000;
/// 600 and below nothing).
constexpr std::int64_t credit_limit(std::int32_t score) {
  return score > 600 ? std::int64_t{score - 600} * 40 : 0;
}

// Commands: set_score from the score stream, enrich from the order stream.
/// Sets the score if `version` is newer than the one held; an older or equal
/// version (a replayed or retried update) is acknowledged without an event, so the
/// score never goes back and applying an update twice changes nothing.
struct set_score {
  std::int64_t version = 0;
  std::int32_t score = 0;
  using reply = done;
};
/// The join: answers `o` enriched from the score held now; persists nothing.
struct enrich {
  order o;
  using reply = enriched_order;
};

// The event and the state.
struct score_set {
  std::int64_t version = 0;
  std::int32_t score = 0;
};
struct credit_state {
  std::int64_t version = 0;  ///< 0: no score yet
  std::int32_t score = 0;
};

/// The join itself, a pure function of the state and the order.
inline enriched_order join(const credit_state& s, const order& o) {
  enriched_order e{o, s.version, s.score, decision::unknown_customer};
  if (s.version > 0)
    e.verdict = o.amount <= credit_limit(s.score) ? decision::approved : decision::declined;
  return e;
}

struct customer_credit {
  static constexpr std::string_view entity_type = "customer-credit";
  using command = std::variant<set_score, enrich>;
  using event = std::variant<score_set>;
  using state = credit_state;
  using effect = troupe::persistence::effect<customer_credit>;

  static effect on_command(const state& s, const set_score& c) {
    if (c.score < min_score || c.score > max_score)
      return effect::reply_error(c, "a credit score is in 300..850");
    if (c.version <= s.version)
      return effect::reply(c, done{});  // stale or a duplicate: nothing changes
    return effect::persist(score_set{c.version, c.score});
  }
  static effect on_command(const state& s, const enrich& c) {
    return effect::reply(c, join(s, c.o));
  }
  static state on_event(state s, const score_set& e) {
    s.version = e.version;
    s.score = e.score;
    return s;
  }

  /// Every score event carries this tag: a read-side table elsewhere can follow
  /// them with events_by_tag (docs/streams.md, "Samples").
  static constexpr std::string_view event_tag = "credit-score";
  static std::vector<std::string> tags(const event&) { return {std::string{event_tag}}; }
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order, id, customer, amount)
NLOHMANN_JSON_SERIALIZE_ENUM(decision, {{decision::approved, "approved"},
                                        {decision::declined, "declined"},
                                        {decision::unknown_customer, "unknown-customer"}})
inline void to_json(nlohmann::json& j, const enriched_order& e) {
  j = nlohmann::json{{"order", e.o.id},           {"customer", e.o.customer},
                     {"amount", e.o.amount},      {"score_version", e.score_version},
                     {"score", e.score},          {"decision", e.verdict}};
}
inline void from_json(const nlohmann::json& j, enriched_order& e) {
  j.at("order").get_to(e.o.id);
  j.at("customer").get_to(e.o.customer);
  j.at("amount").get_to(e.o.amount);
  j.at("score_version").get_to(e.score_version);
  j.at("score").get_to(e.score);
  j.at("decision").get_to(e.verdict);
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(set_score, version, score)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(enrich, o)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(score_set, version, score)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(credit_state, version, score)

/// Stable manifests for the event, the state (snapshots), and the commands and
/// replies that sharding carries between nodes (`done` needs none).
inline void register_types(troupe::codec_registry& codec) {
  codec.add<score_set>("orders.score-set");
  codec.add<credit_state>("orders.credit-state");
  codec.add<set_score>("orders.set-score");
  codec.add<enrich>("orders.enrich");
  codec.add<enriched_order>("orders.enriched-order");
}

} // namespace order_enrichment
