# cmake -DROOT=<source dir> -P scan.cmake: fails when a source names a
# header by path (every include of ours is a bare name, found through the
# include directories CMake gives the target, so a path could only reach
# around them) or when a CMakeLists outside tests/ calls cardline_internal().
set(bad "")
file(GLOB_RECURSE sources ${ROOT}/gateway/*.[ch] ${ROOT}/handlers/*.[ch] ${ROOT}/tools/*.[ch]
     ${ROOT}/tests/*.[ch])
foreach(f ${sources})
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"[^\"]*/")
  foreach(l ${lines})
    list(APPEND bad "${f}: ${l}")
  endforeach()
endforeach()
# A module's own CMakeLists names its internal/ only as its PRIVATE
# include directory; nothing outside tests/ asks for another module's.
file(GLOB lists ${ROOT}/CMakeLists.txt ${ROOT}/gateway/CMakeLists.txt ${ROOT}/handlers/CMakeLists.txt
     ${ROOT}/gateway/*/CMakeLists.txt ${ROOT}/tools/*/CMakeLists.txt)
foreach(f ${lists})
  file(STRINGS ${f} lines REGEX "^[^#]*internal")
  foreach(l ${lines})
    string(REPLACE "PRIVATE \${CMAKE_CURRENT_SOURCE_DIR}/internal" "" rest "${l}")
    if(rest MATCHES "internal")
      list(APPEND bad "${f}: ${l}")
    endif()
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n" text)
  message(FATAL_ERROR "a face rule is broken (docs/architecture.md, Faces):\n${text}")
endif()
