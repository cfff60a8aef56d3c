# cardline_target(<target>): the warnings every target of ours builds with.
# Third-party headers come in through pkg-config targets as SYSTEM includes,
# so -Werror applies to our code only.
function(cardline_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
  target_include_directories(${target} PRIVATE ${CMAKE_BINARY_DIR}/generated)
endfunction()
