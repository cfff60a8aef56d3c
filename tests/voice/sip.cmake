# SIP signalling against a real caller: sipp scenarios (tests/voice/sipp)
# over UDP and TCP. The test's base needs evthread_use_pthreads().
cardline_test(test_sip SOURCES test_sip.c LIBS cl_voice_sip INTEGRATION)
target_compile_definitions(test_sip PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp")

# /healthz names voice: ops on a real listener watching a real SIP thread,
# frozen and recovering.
cardline_test(test_voice_health SOURCES test_voice_health.c LIBS cl_voice_sip cl_ops INTEGRATION)
