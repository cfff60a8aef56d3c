# RTP packets, RFC 4733 events and in-band tones: pure functions, no sockets.
cardline_test(test_rtp SOURCES test_rtp.c LIBS cl_voice_rtp)
