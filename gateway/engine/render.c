/* render — an engine output as text, for the channels that show text (USSD
 * pages, SMS replies, the terminal driver). Owns nothing: prompts are
 * rendered by the dialplan set the engine runs now. */
#include <string.h>

#include "dialplan.h"
#include "engine.h"
#include "utf8.h"

#define PROMPT_TEXT_MAX 2048

/* Appends `text` to out[*used..], never splitting a UTF-8 character. */
static void append(char *out, size_t size, size_t *used, const char *text)
{
    size_t n = utf8_cut(text, size - 1 - *used);
    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

size_t engine_render_text(const engine *e, json_t *output, channel_kind channel, char *out,
                          size_t out_size)
{
    const dialplan *dp = engine_dialplan(e);
    const char *lang = json_string_value(json_object_get(output, "lang"));
    size_t used = 0, i;
    json_t *p;
    if (out_size == 0)
        return 0;
    out[0] = '\0';
    if (lang == NULL)
        lang = dialplan_language(dp, 0);
    json_array_foreach(json_object_get(output, "prompts"), i, p) {
        char text[PROMPT_TEXT_MAX];
        const char *id = json_string_value(json_object_get(p, "id"));
        if (id == NULL || !dialplan_render_text(dp, lang, channel, id, json_object_get(p, "vars"),
                                                text, sizeof text))
            continue;
        if (used > 0)
            append(out, out_size, &used, "\n");
        append(out, out_size, &used, text);
    }
    return used;
}
