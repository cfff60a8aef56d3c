# cardline_target(<target>): the warnings every target of ours builds with.
# Third-party headers come in through pkg-config targets as SYSTEM includes,
# so -Werror applies to our code only.
function(cardline_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
  target_include_directories(${target} PRIVATE ${CMAKE_BINARY_DIR}/generated)
endfunction()

# cardline_internal(<target> <module folder>...): lets a white-box test or
# benchmark include the internal headers of the modules named (their
# <folder>/internal, e.g. gateway/engine). Each module puts only its faces in
# its PUBLIC include directory and its internal/ in PRIVATE, so nothing else
# can include them; production targets never call this (tests/faces checks).
function(cardline_internal target)
  foreach(dir ${ARGN})
    target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/${dir}/internal)
  endforeach()
endfunction()
