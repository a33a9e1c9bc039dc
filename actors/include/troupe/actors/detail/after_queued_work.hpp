// Internal: a message an actor sends itself once the work its scheduler worker
// has queued now has run: the end of a burst, for actors that batch output.
//
// An actor that gathers output into batches (a shard region's forwarded commands
// and its answers to other nodes) must choose when a burst is over. A message to
// itself is no good sign: it comes right after what its mailbox holds, but the
// messages that complete the burst are often not there yet. They are still to
// come from the actors queued on the same worker (the entities it just asked,
// each of which answers when it runs), so the batch left with the first few
// answers: 4-5 answers per packet in entity_ask_remote, a send and a wake-up of
// the other process for each (docs/benchmarks.md, "The end of a burst").
//
// send_after_queued_work() puts a job at the back of the worker's run queue that
// delivers the message when it comes up. Jobs the worker queues meanwhile go to
// the front (CAF's LIFO locality), so the message arrives once the worker ran
// every actor queued before it and everything those queued in turn; work from
// outside the scheduler (the I/O thread, the journal's writer) queues behind it.
// Another worker may steal the job earlier, and a worker takes a job that waited
// 1,024 takes at its tail (actors/src/scheduler.hpp, take_own): then the burst is
// cut short, never lost, and a chain of actors that never ends cannot hold the
// message back. From an actor on its own thread (a detached actor) the job goes
// to the scheduler like any other. Not for CAF's test coordinator, which expects
// only actors in its queue.
//
// Thread-safety: call from `self`'s handlers (on the thread that runs it). The
// message is delivered at most once, never if `self` ended first.
#pragma once

#include <caf/fwd.hpp>
#include <caf/message.hpp>

namespace troupe::detail {

/// Sends `msg` to `self` (no sender) after the jobs now queued on its worker ran.
void send_after_queued_work(caf::scheduled_actor* self, caf::message msg);

} // namespace troupe::detail
