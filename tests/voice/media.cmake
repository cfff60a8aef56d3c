# RTP streams on loopback: pacing, play lists, keys, inactivity, port range.
cardline_test(test_media SOURCES test_media.c LIBS cl_voice_media INTEGRATION)
