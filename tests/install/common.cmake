# What the install tests (install_starter.cmake, add_subdirectory.cmake) share:
# run(<what> <command...>), which fails the test with the command's output and sets
# `output`, and `launcher`, the configure flag that builds an outside project with
# the same compiler cache as troupe's build (stable paths: WORK_DIR is fixed).
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(output "${out}" PARENT_SCOPE)
endfunction()

find_program(ccache ccache)
set(launcher)
if(ccache)
  set(ENV{CCACHE_SLOPPINESS} "time_macros,include_file_mtime,include_file_ctime")
  set(ENV{CCACHE_DEPEND} 1)  # as troupe's own build (cmake/troupe_build.cmake)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${ccache})
endif()
