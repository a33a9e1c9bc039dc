// A bank account as an event-sourced entity (the example of docs/persistence.md and
// of the sharded bank, docs/sharding.md).
//
// Transfers are two legs, a withdraw from one account and a deposit to another,
// each carrying the transfer's id. An account applies a leg of a given transfer at
// most once (it remembers the ids it applied), so whoever drives a transfer may
// send a leg again after a lost reply or a node failure without moving money twice.
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/entity.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace bank {

using troupe::persistence::done;

// Commands: plain structs, each naming the type of its reply.
struct open_account { std::string owner;   using reply = done; };
/// `transfer`: the id of the transfer this is a leg of ("" for none). A leg already
/// applied is acknowledged again without a second event.
struct deposit      { std::int64_t amount; std::string transfer; using reply = done; };
struct withdraw     { std::int64_t amount; std::string transfer; using reply = done; };
struct get_balance  {                      using reply = std::int64_t; };
struct close_account {                     using reply = done; };

// Events: what the journal stores.
struct account_opened { std::string owner; };
struct deposited      { std::int64_t amount; std::string transfer; };
struct withdrawn      { std::int64_t amount; std::string transfer; };
struct account_closed {};

// State: what the events fold into.
enum class account_status { empty, open, closed };
struct account_state {
  account_status status = account_status::empty;
  std::string owner;
  std::int64_t balance = 0;
  std::set<std::string> transfers;  ///< ids of the transfer legs applied
};

struct account {
  static constexpr std::string_view entity_type = "account";
  using command = std::variant<open_account, deposit, withdraw, get_balance, close_account>;
  using event = std::variant<account_opened, deposited, withdrawn, account_closed>;
  using state = account_state;
  using effect = troupe::persistence::effect<account>;

  static effect on_command(const state& s, const open_account& c) {
    if (s.status != account_status::empty)
      return effect::reply_error(c, "the account already exists");
    return effect::persist(account_opened{c.owner});
  }
  static effect on_command(const state& s, const deposit& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (c.amount <= 0)
      return effect::reply_error(c, "the amount must be positive");
    if (!c.transfer.empty() && s.transfers.count(c.transfer) > 0)
      return effect::reply(c, done{});
    return effect::persist(deposited{c.amount, c.transfer});
  }
  static effect on_command(const state& s, const withdraw& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (!c.transfer.empty() && s.transfers.count(c.transfer) > 0)
      return effect::reply(c, done{});
    if (c.amount > s.balance)
      return effect::reply_error(c, "insufficient balance");
    return effect::persist(withdrawn{c.amount, c.transfer});
  }
  static effect on_command(const state& s, const get_balance& c) {
    return effect::reply(c, s.balance);
  }
  static effect on_command(const state& s, const close_account& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (s.balance != 0)
      return effect::reply_error(c, "the balance must be zero to close the account");
    return effect::persist(account_closed{});
  }

  static state on_event(state s, const account_opened& e) {
    s.status = account_status::open;
    s.owner = e.owner;
    return s;
  }
  static state on_event(state s, const deposited& e) {
    s.balance += e.amount;
    if (!e.transfer.empty())
      s.transfers.insert(e.transfer);
    return s;
  }
  static state on_event(state s, const withdrawn& e) {
    s.balance -= e.amount;
    if (!e.transfer.empty())
      s.transfers.insert(e.transfer);
    return s;
  }
  static state on_event(state s, const account_closed&) {
    s.status = account_status::closed;
    return s;
  }

  /// Every account event carries this tag, so a projection reads them all in
  /// offset order with events_by_tag (samples/bank_projection).
  static constexpr std::string_view event_tag = "account";
  static std::vector<std::string> tags(const event&) { return {std::string{event_tag}}; }

  // A snapshot every 100 events; keep the 2 newest.
  static troupe::persistence::entity_options options() {
    return {.snapshot_every = 100, .keep_snapshots = 2};
  }
};

// JSON for the codec (events are stored as CBOR of this JSON; commands and replies
// travel between nodes as CBOR of it).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(account_opened, owner)
// A leg's transfer id is written only when there is one, and optional when read:
// events stored before transfers existed read as plain deposits and withdrawals.
template <class Leg>
void leg_to_json(nlohmann::json& j, const Leg& x) {
  j = nlohmann::json{{"amount", x.amount}};
  if (!x.transfer.empty())
    j["transfer"] = x.transfer;
}
template <class Leg>
void leg_from_json(const nlohmann::json& j, Leg& x) {
  j.at("amount").get_to(x.amount);
  x.transfer = j.value("transfer", std::string{});
}
inline void to_json(nlohmann::json& j, const deposited& x) { leg_to_json(j, x); }
inline void from_json(const nlohmann::json& j, deposited& x) { leg_from_json(j, x); }
inline void to_json(nlohmann::json& j, const withdrawn& x) { leg_to_json(j, x); }
inline void from_json(const nlohmann::json& j, withdrawn& x) { leg_from_json(j, x); }
inline void to_json(nlohmann::json& j, const deposit& x) { leg_to_json(j, x); }
inline void from_json(const nlohmann::json& j, deposit& x) { leg_from_json(j, x); }
inline void to_json(nlohmann::json& j, const withdraw& x) { leg_to_json(j, x); }
inline void from_json(const nlohmann::json& j, withdraw& x) { leg_from_json(j, x); }
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(open_account, owner)
inline void to_json(nlohmann::json& j, const get_balance&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get_balance&) {}
inline void to_json(nlohmann::json& j, const close_account&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, close_account&) {}
inline void to_json(nlohmann::json& j, const account_closed&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, account_closed&) {}
NLOHMANN_JSON_SERIALIZE_ENUM(account_status, {{account_status::empty, "empty"},
                                              {account_status::open, "open"},
                                              {account_status::closed, "closed"}})
// The applied transfer ids only when there are some (older snapshots have none).
inline void to_json(nlohmann::json& j, const account_state& s) {
  j = nlohmann::json{{"status", s.status}, {"owner", s.owner}, {"balance", s.balance}};
  if (!s.transfers.empty())
    j["transfers"] = s.transfers;
}
inline void from_json(const nlohmann::json& j, account_state& s) {
  j.at("status").get_to(s.status);
  j.at("owner").get_to(s.owner);
  j.at("balance").get_to(s.balance);
  s.transfers = j.value("transfers", std::set<std::string>{});
}

// Stable manifests: renaming a C++ type never breaks stored events.
inline void register_types(troupe::codec_registry& codec) {
  codec.add<account_opened>("bank.account-opened");
  codec.add<deposited>("bank.deposited");
  codec.add<withdrawn>("bank.withdrawn");
  codec.add<account_closed>("bank.account-closed");
  codec.add<account_state>("bank.account-state");  // for snapshots
  // Commands and replies, so sharding can carry them to the node that hosts the
  // account (`done` needs no registration).
  codec.add<open_account>("bank.open-account");
  codec.add<deposit>("bank.deposit");
  codec.add<withdraw>("bank.withdraw");
  codec.add<get_balance>("bank.get-balance");
  codec.add<close_account>("bank.close-account");
  codec.add<std::int64_t>("bank.amount");  // get_balance's reply
}

} // namespace bank
