// The precompiled header shared by every troupe target (see troupe_build.cmake).
// Only stable third-party headers belong here: changing this file rebuilds everything.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>
#include <fmt/core.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
