# `cmake --install build --prefix P`: the libraries every layer builds (and
# troupe::node_main), their public headers, the `troupe` and `troupe-node` tools,
# a CMake package (find_package(troupe): troupeConfig.cmake, version file, imported
# targets troupe::actors, troupe::persistence, ... that carry their dependencies)
# and troupe.pc for pkg-config. samples/starter is the project that uses it; the
# test "install: ..." (tests/install) builds it against an installed troupe.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

get_property(troupe_libraries GLOBAL PROPERTY TROUPE_INSTALLED_LIBRARIES)
install(TARGETS ${troupe_libraries} EXPORT troupeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
foreach(dir actors persistence membership sharding streams tools/cli tools/node)
  if(EXISTS ${PROJECT_SOURCE_DIR}/${dir}/include)
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/include/ TYPE INCLUDE)
  endif()
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/generated/troupe/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/troupe)
foreach(tool troupe troupe-node)
  if(TARGET ${tool})
    install(TARGETS ${tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

set(troupe_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)
install(EXPORT troupeTargets NAMESPACE troupe:: DESTINATION ${troupe_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/troupeConfig.cmake INSTALL_DESTINATION ${troupe_cmake_dir})
# 0.x: a minor version may break the API, so only the same minor version matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/troupeConfig.cmake
              ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/troupe_find_caf.cmake
        DESTINATION ${troupe_cmake_dir})

# troupe.pc: every library, top layer first (static libraries: the order matters).
set(troupe_pc_libs "")
foreach(lib troupe_node_main troupe_cli troupe_streams troupe_sharding troupe_membership
            troupe_persistence troupe_actors)
  if(lib IN_LIST troupe_libraries)
    string(APPEND troupe_pc_libs " -l${lib}")
  endif()
endforeach()
# Relocatable: the prefix is found from the .pc file's own place (--prefix at install).
file(RELATIVE_PATH troupe_pc_to_prefix /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${PROJECT_SOURCE_DIR}/cmake/troupe.pc.in ${PROJECT_BINARY_DIR}/troupe.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/troupe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
