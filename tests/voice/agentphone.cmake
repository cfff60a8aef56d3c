# The demo's transfer path end to end: baresip (scripts/softphone, headless)
# calls the real daemon, is transferred to cardline-agentphone, resumed into
# PIN entry and sent back. Needs baresip and sip-tester's neighbours:
# redis-server, the registry simulator.
cardline_test(test_agentphone_e2e SOURCES test_agentphone_e2e.c
              LIBS PkgConfig::JANSSON PkgConfig::HIREDIS PkgConfig::SNDFILE INTEGRATION)
target_compile_definitions(test_agentphone_e2e PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp"
                           CL_AGENTPHONE_BIN="$<TARGET_FILE:cardline-agentphone>")
add_dependencies(test_agentphone_e2e cardline-agentphone)
