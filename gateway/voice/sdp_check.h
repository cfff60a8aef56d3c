/* sdp_check — the gate an SDP body passes before sofia-sip's sdp_parse sees
 * it: sizes first (bytes, lines, line length, media sections, formats per
 * m= line, attributes), then RFC 4566's grammar (section 9) as one anchored
 * PCRE2 pattern over the whole body. sofia-sip 1.12.11's parser loops
 * allocating on some inputs the grammar excludes (a format that is not a
 * token, docs/voice.md); a body that passes here is one it handles.
 *
 * Pure: no I/O, no logging. Thread-safe: the pattern is compiled once; each
 * call uses match data of its own. */
#ifndef CARDLINE_VOICE_SDP_CHECK_H
#define CARDLINE_VOICE_SDP_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#define SDP_CHECK_MAX_BYTES 4096       /* a whole body */
#define SDP_CHECK_MAX_LINES 64         /* lines in a body */
#define SDP_CHECK_MAX_LINE 512         /* bytes in one line, end of line excluded */
#define SDP_CHECK_MAX_MEDIA 4          /* m= sections */
#define SDP_CHECK_MAX_FORMATS 32       /* formats on one m= line */
#define SDP_CHECK_MAX_ATTRIBUTES 48    /* a= lines in a body */

/* True when `body` (len bytes, NUL not required) is within the limits and
 * matches the grammar. Otherwise false, and *why (when why is not NULL)
 * names the first reason: "empty", "too_large", "nul_byte", "too_many_lines",
 * "line_too_long", "too_many_media", "too_many_formats",
 * "too_many_attributes", "grammar" or "internal" (the pattern could not be
 * compiled or matched: treated as a refusal). The reason is a static
 * string, safe to log and to use as a metrics label. */
bool sdp_check(const char *body, size_t len, const char **why);

#endif
