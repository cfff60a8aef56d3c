# SIP signalling against a real caller: sipp scenarios (tests/voice/sipp)
# over UDP and TCP. The test's base needs evthread_use_pthreads().
cardline_test(test_sip SOURCES test_sip.c LIBS cl_voice_sip INTEGRATION)
target_compile_definitions(test_sip PRIVATE CL_SIPP_DIR="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
