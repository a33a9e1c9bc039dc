// The streams layer in one include (docs/streams.md).
#pragma once

#include "troupe/streams/elementwise.hpp"
#include "troupe/streams/flow.hpp"
#include "troupe/streams/runnable.hpp"
#include "troupe/streams/sink.hpp"
#include "troupe/streams/sinks.hpp"
#include "troupe/streams/source.hpp"
#include "troupe/streams/sources.hpp"
#include "troupe/streams/stream_future.hpp"
