# Prompt audio: the files a set needs, loading them into G.711 and the
# clips a prompt with values becomes (files written by the test itself).
cardline_test(test_audio SOURCES test_audio.c LIBS cl_voice_audio cl_dialplan)
