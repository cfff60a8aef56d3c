# Agent → IVR → agent on voice end to end: a citizen transferred to an agent,
# sent back to a resume URI with a token in Redis, REFERred back (sipp,
# tests/voice/sipp/resume-*.xml and e2e-*.xml) against the real daemon,
# redis-server and registry-sim. The PIN cases need root or CAP_NET_RAW
# (RFC 4733 from pcaps) and are skipped without.
cardline_test(test_resume_e2e SOURCES test_resume_e2e.c LIBS PkgConfig::JANSSON PkgConfig::HIREDIS INTEGRATION)
target_compile_definitions(test_resume_e2e PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
