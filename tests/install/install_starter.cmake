# The install test (ctest label "install"): `cmake --install` of this build into a
# fresh prefix, then samples/starter configured with find_package(troupe) against
# that prefix only, built, its test run, and the program run twice (the second run
# recovers from the journal the first wrote). Also: troupe.pc resolves, and the
# transport's internal headers are not installed.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -P install_starter.cmake
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)  # run(), launcher (ccache)

set(prefix ${WORK_DIR}/prefix)
set(starter ${WORK_DIR}/starter)
file(REMOVE_RECURSE ${prefix} ${starter})
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(internal wire handshake hmac)
  if(EXISTS ${prefix}/include/troupe/actors/remote/${internal}.hpp)
    message(FATAL_ERROR "the internal header remote/${internal}.hpp was installed")
  endif()
endforeach()

run("configuring samples/starter" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/samples/starter -B ${starter}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix} ${launcher})
run("building samples/starter" ${CMAKE_COMMAND} --build ${starter} -j 2)
run("the starter's test" ${CMAKE_CTEST_COMMAND} --test-dir ${starter} --output-on-failure
    --no-tests=error)

set(db --persistence.journal.path=${starter}/starter.db)
run("starter (first run)" ${starter}/starter ${db} --log.level=warn)
if(NOT output STREQUAL "visits: 5\n")
  message(FATAL_ERROR "starter printed '${output}', not 'visits: 5'")
endif()
run("starter (second run)" ${starter}/starter ${db} --log.level=warn)
if(NOT output STREQUAL "visits: 10\n")
  message(FATAL_ERROR "starter printed '${output}' on its second run, not 'visits: 10'")
endif()
run("starter --help" ${starter}/starter --help)

set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run("pkg-config troupe" pkg-config --cflags --libs troupe)
string(REGEX MATCH "-I([^ \n]+)" include_flag "${output}")
file(REAL_PATH "${CMAKE_MATCH_1}" include_dir)
if(NOT include_dir STREQUAL "${prefix}/include" OR NOT output MATCHES "-ltroupe_persistence")
  message(FATAL_ERROR "pkg-config --cflags --libs troupe: '${output}'")
endif()
message(STATUS "installed into ${prefix}; samples/starter built and passed against it")
