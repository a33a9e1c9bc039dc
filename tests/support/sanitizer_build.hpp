// Whether this test binary is built with a sanitizer (ASan + UBSan or TSan), for
// the few tests whose amount of work or memory bound depends on it: a sanitized
// process runs several times slower and keeps more memory (ASan's quarantine and
// padding, TSan's shadow memory) for the same work.
#pragma once

namespace troupe::test {

#if defined(TROUPE_SANITIZE) || defined(TROUPE_TSAN)
inline constexpr bool sanitizer_build = true;
#else
inline constexpr bool sanitizer_build = false;
#endif

} // namespace troupe::test
