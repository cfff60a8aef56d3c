# The voice channel end to end: sipp callers (tests/voice/sipp/e2e-*.xml)
# against the real daemon, redis-server and registry-sim. Needs sipp
# (package sip-tester); the RFC 4733 case needs root or CAP_NET_RAW and is
# skipped without.
cardline_test(test_voice_e2e SOURCES test_voice_e2e.c LIBS PkgConfig::JANSSON PkgConfig::HIREDIS INTEGRATION)
target_compile_definitions(test_voice_e2e PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp")

# Values the registry gives as free text (a bank's name, an outlet's
# address), synthesized at run time and proven from the RTP the caller
# receives (test_speech_e2e.c).
cardline_test(test_speech_e2e SOURCES test_speech_e2e.c LIBS cl_speech cl_voice_rtp m PkgConfig::JANSSON PkgConfig::HIREDIS INTEGRATION)
target_compile_definitions(test_speech_e2e PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
