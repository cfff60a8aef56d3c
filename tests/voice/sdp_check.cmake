# The SDP gate: offers real phones send pass, malformed and oversized ones
# (the datagram of issue 13 among them) are refused with their reason.
cardline_test(test_sdp_check SOURCES test_sdp_check.c LIBS cl_voice_sdp)
